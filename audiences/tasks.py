"""Celery tasks of the audiences app: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from config.settings.celery import Queues
from dingtalk.errors import ServerError, Throttled


@shared_task(
    name="audiences.validate_import_job", queue=Queues.BULK, soft_time_limit=1800, time_limit=1900
)
def validate_import_job_task(job_id: int) -> None:
    from audiences.importing import import_job_validate

    import_job_validate(job_id=job_id)


@shared_task(
    name="audiences.apply_import_job", queue=Queues.BULK, soft_time_limit=1800, time_limit=1900
)
def apply_import_job_task(job_id: int) -> None:
    from audiences.importing import import_job_apply

    import_job_apply(job_id=job_id)


@shared_task(
    name="audiences.sync_directory", queue=Queues.BULK, soft_time_limit=3000, time_limit=3100
)
def sync_directory_task(sync_id: int) -> None:
    """No automatic retry: the run is claimed once; a failed run is recorded and can be requested again."""
    from audiences.sync import directory_sync_run

    directory_sync_run(sync_id=sync_id)


@shared_task(
    name="audiences.apply_directory_event",
    queue=Queues.BULK,
    autoretry_for=(Throttled, ServerError),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
)
def apply_directory_event_task(department_id: int, event_type: str, userids: list[str]) -> None:
    from audiences.sync import directory_event_apply

    directory_event_apply(department_id=department_id, event_type=event_type, userids=userids)


@shared_task(name="audiences.sweep_stale_work", queue=Queues.DEFAULT)
def sweep_stale_work_task() -> dict[str, int]:
    """Beat: import jobs and syncs whose worker died are marked failed (see audiences.maintenance)."""
    from audiences.maintenance import stale_work_sweep

    return stale_work_sweep()
