"""The Celery application. Tasks live in each app's tasks.py and name their queue."""

from __future__ import annotations

import inspect
import os
import time
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun
from django.db import close_old_connections

from operations.logs import reset_context, set_task_context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def recycle_database_connections(sender: Any = None, **_kwargs: Any) -> None:
    """Keep a worker's database connection between tasks, as Django keeps it between requests.

    Celery's Django fix-up would close every connection before and after each task (unless
    CELERY_DB_REUSE_MAX is set, see config.settings.celery): a new PostgreSQL connection and
    its set-up queries per task, a fifth of a send task's time at hundreds of calls a second.
    Instead CONN_MAX_AGE and CONN_HEALTH_CHECKS apply, around each task as around each request:
    an old or broken connection is closed, a healthy one is reused. Eager tasks (tests, and
    calls made inside a request) leave the caller's connection alone.
    """
    request = getattr(sender, "request", None)
    if getattr(request, "is_eager", False):
        return
    close_old_connections()


@before_task_publish.connect
def stamp_publish_time(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    """Record when a message was published, for the oldest-waiting-message metric."""
    if headers is not None:
        headers.setdefault("published_at", time.time())


@task_prerun.connect
def set_log_context(
    task_id: str | None = None,
    task: Any = None,
    args: tuple[Any, ...] | None = None,
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """Log lines written by a task carry its id and the notice or plan id it was given."""
    named: dict[str, Any]
    try:
        bound = inspect.signature(task.run).bind_partial(*(args or ()), **(kwargs or {}))
        named = dict(bound.arguments)
    except (TypeError, ValueError, AttributeError):
        named = dict(kwargs or {})
    token = set_task_context(str(task_id), str(getattr(task, "name", "")), named)
    if task is not None:
        task.request.log_context_token = token


@task_postrun.connect
def clear_log_context(task: Any = None, **_: Any) -> None:
    token = getattr(getattr(task, "request", None), "log_context_token", None)
    if token is not None:
        reset_context(token)
        task.request.log_context_token = None
