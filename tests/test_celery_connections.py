"""A worker reuses its database connection between tasks, within CONN_MAX_AGE."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.fixups.django import DjangoWorkerFixup  # type: ignore[attr-defined]  # not in the stubs
from celery.signals import task_postrun, task_prerun
from django.db import connection

from config.celery import app
from delivery.tasks import send_batches_task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kept_connection() -> Iterator[object]:
    """A connection opened under CONN_MAX_AGE=60, as the worker settings give it."""
    before = connection.settings_dict["CONN_MAX_AGE"]
    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = 60
    connection.ensure_connection()
    try:
        yield connection.connection
    finally:
        connection.close()
        connection.settings_dict["CONN_MAX_AGE"] = before


def run_task_signals(task: object) -> None:
    task_prerun.send(sender=task, task_id="t", task=task, args=(), kwargs={})
    task_postrun.send(sender=task, task_id="t", task=task, args=(), kwargs={}, retval=None)


def test_a_task_keeps_a_young_connection(kept_connection: object) -> None:
    task = send_batches_task
    fixup = DjangoWorkerFixup(app)
    for _ in range(3):
        run_task_signals(task)
        fixup.close_database()  # what the fix-up does around each task
    assert connection.connection is kept_connection


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="Django never closes an in-memory SQLite database"
)
def test_an_expired_connection_is_replaced(kept_connection: object) -> None:
    connection.close_at = 0.0  # older than CONN_MAX_AGE
    run_task_signals(send_batches_task)
    assert connection.connection is None
    connection.ensure_connection()
    assert connection.connection is not kept_connection
