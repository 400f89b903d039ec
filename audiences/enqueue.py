"""The only code that puts audiences work on a Celery queue: task names, their queues, and a
function per kind of work.

Services call these on commit; audiences.tasks declares the tasks under the same names. Nothing
here imports the tasks module: the task is found by name in the Celery app's registry.
"""

from __future__ import annotations

from typing import Any

from celery import Task, current_app

from config.settings.celery import Queues

IMPORT_VALIDATE = "audiences.validate_import_job"
IMPORT_APPLY = "audiences.apply_import_job"
DIRECTORY_SYNC = "audiences.sync_directory"
DIRECTORY_EVENT_APPLY = "audiences.apply_directory_event"
# Queued by the beat schedule (config.settings.audiences), never by our code.
STALE_WORK_SWEEP = "audiences.sweep_stale_work"

QUEUE_OF: dict[str, str] = {
    IMPORT_VALIDATE: Queues.BULK,
    IMPORT_APPLY: Queues.BULK,
    DIRECTORY_SYNC: Queues.BULK,
    DIRECTORY_EVENT_APPLY: Queues.BULK,
    STALE_WORK_SWEEP: Queues.DEFAULT,
}


def _registered(name: str) -> Task[Any, Any]:
    """The task declared under `name`.

    Task modules are autodiscovered (config.celery) when the app imports its default modules: a
    worker does so at start, a web process or a test here on its first enqueue. Going through the
    registered task (not send_task) keeps tests' CELERY_TASK_ALWAYS_EAGER working, and a name no
    module declares fails here instead of queueing work that nothing would run.
    """
    if name not in current_app.tasks:
        current_app.loader.import_default_modules()
    return current_app.tasks[name]


def _enqueue(name: str, *args: Any) -> None:
    _registered(name).apply_async(args=args, queue=QUEUE_OF[name])


def import_validate(job_id: int) -> None:
    """Dry-run an uploaded import job's file (audiences.import_jobs.import_job_validate)."""
    _enqueue(IMPORT_VALIDATE, job_id)


def import_apply(job_id: int) -> None:
    """Import a confirmed job's file (audiences.import_jobs.import_job_apply)."""
    _enqueue(IMPORT_APPLY, job_id)


def directory_sync(sync_id: int) -> None:
    """Walk a department's DingTalk directory (audiences.sync.directory_sync_run)."""
    _enqueue(DIRECTORY_SYNC, sync_id)


def directory_event_apply(department_id: int, event_type: str, userids: list[str]) -> None:
    """Apply one pushed directory event (audiences.sync.directory_event_apply)."""
    _enqueue(DIRECTORY_EVENT_APPLY, department_id, event_type, userids)
