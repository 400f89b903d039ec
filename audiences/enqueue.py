"""The only code that puts audiences work on a Celery queue: task names, their queues, and a
function per kind of work.

Services call these on commit; audiences.tasks declares the tasks under the same names. Nothing
here imports the tasks module: common.queueing sends the task by name.
"""

from __future__ import annotations

from common.queueing import send_by_name
from config.settings.celery import Queues

IMPORT_VALIDATE = "audiences.validate_import_job"
IMPORT_APPLY = "audiences.apply_import_job"
DIRECTORY_SYNC = "audiences.sync_directory"
DIRECTORY_EVENT_APPLY = "audiences.apply_directory_event"
# Queued by the beat schedule (config.settings.audiences), never by our code.
STALE_WORK_SWEEP = "audiences.sweep_stale_work"
FOLLOWERS_RECONCILE = "audiences.reconcile_followers"

TASK_QUEUES: dict[str, str] = {
    IMPORT_VALIDATE: Queues.BULK,
    IMPORT_APPLY: Queues.BULK,
    DIRECTORY_SYNC: Queues.BULK,
    DIRECTORY_EVENT_APPLY: Queues.BULK,
    STALE_WORK_SWEEP: Queues.DEFAULT,
    FOLLOWERS_RECONCILE: Queues.BULK,
}


def _enqueue(name: str, *args: object) -> None:
    send_by_name(name, args, queue=TASK_QUEUES[name])


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
