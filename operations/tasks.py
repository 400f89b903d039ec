"""Daily operations work: expired personal data anonymised."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from operations import enqueue, retention


@shared_task(
    name=enqueue.APPLY_RETENTION,
    queue=enqueue.TASK_QUEUES[enqueue.APPLY_RETENTION],
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=60,
    retry_backoff_max=900,
    max_retries=5,
    soft_time_limit=3600,
    time_limit=3660,
)
def apply_retention_task() -> dict[str, int]:
    """Anonymise what each department's retention period has passed (a rerun finds nothing)."""
    results = retention.retention_apply()
    return {
        "locations_removed": sum(r.locations_removed for r in results.values()),
        "rows_anonymised": sum(r.rows_anonymised for r in results.values()),
    }
