"""The Celery application. Tasks live in each app's tasks.py and name their queue."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun
from django.db import close_old_connections

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
