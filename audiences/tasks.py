"""Celery tasks of the audiences app: ids in, one service call, safe to run twice.

Names and queues come from audiences.enqueue, the only code that queues this work.
"""

from __future__ import annotations

from celery import shared_task

from audiences import enqueue, followers, import_jobs, maintenance, sync
from dingtalk.errors import ServerError, Throttled


@shared_task(
    name=enqueue.IMPORT_VALIDATE,
    queue=enqueue.TASK_QUEUES[enqueue.IMPORT_VALIDATE],
    soft_time_limit=1800,
    time_limit=1900,
)
def validate_import_job_task(job_id: int) -> None:
    import_jobs.import_job_validate(job_id=job_id)


@shared_task(
    name=enqueue.IMPORT_APPLY,
    queue=enqueue.TASK_QUEUES[enqueue.IMPORT_APPLY],
    soft_time_limit=1800,
    time_limit=1900,
)
def apply_import_job_task(job_id: int) -> None:
    import_jobs.import_job_apply(job_id=job_id)


@shared_task(
    name=enqueue.DIRECTORY_SYNC,
    queue=enqueue.TASK_QUEUES[enqueue.DIRECTORY_SYNC],
    soft_time_limit=3000,
    time_limit=3100,
)
def sync_directory_task(sync_id: int) -> None:
    """No automatic retry: the run is claimed once; a failed run is recorded and can be requested again."""
    sync.directory_sync_run(sync_id=sync_id)


@shared_task(
    name=enqueue.DIRECTORY_EVENT_APPLY,
    queue=enqueue.TASK_QUEUES[enqueue.DIRECTORY_EVENT_APPLY],
    autoretry_for=(Throttled, ServerError),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
)
def apply_directory_event_task(department_id: int, event_type: str, userids: list[str]) -> None:
    sync.directory_event_apply(department_id=department_id, event_type=event_type, userids=userids)


@shared_task(name=enqueue.STALE_WORK_SWEEP, queue=enqueue.TASK_QUEUES[enqueue.STALE_WORK_SWEEP])
def sweep_stale_work_task() -> dict[str, int]:
    """Beat: import jobs and syncs whose worker died are marked failed (see audiences.maintenance)."""
    return maintenance.stale_work_sweep()


@shared_task(
    name=enqueue.FOLLOWERS_RECONCILE,
    queue=enqueue.TASK_QUEUES[enqueue.FOLLOWERS_RECONCILE],
    autoretry_for=(Throttled, ServerError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def reconcile_followers_task(department_id: int | None = None) -> dict[str, int]:
    """Beat (no argument: every department with a Service Window): apply the follow events
    DingTalk failed to push (see audiences.followers)."""
    totals = {"fetched": 0, "changed": 0}
    ids = [department_id] if department_id else followers.departments_to_reconcile()
    for one in ids:
        for key, value in followers.followers_reconcile(department_id=one).items():
            totals[key] += value
    return totals
