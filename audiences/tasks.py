"""Celery tasks of the audiences app: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from config.settings.celery import Queues


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
