"""Background work for the trail: large exports and the nightly chain verification.

Queued only through audit.enqueue, under its task names.
"""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from audit import anchors, chain_runs, enqueue, exports, maintenance


@shared_task(
    name=enqueue.EXPORT_EVENTS,
    queue=enqueue.TASK_QUEUES[enqueue.EXPORT_EVENTS],
    acks_late=True,
    # A million rows take about a minute as CSV and longer as XLSX; well inside these limits.
    soft_time_limit=3600,
    time_limit=3660,
)
def export_events_task(export_id: str) -> None:
    """Write one background export (idempotent: a second delivery finds it claimed or done)."""
    exports.export_run(export_id=export_id)


@shared_task(
    name=enqueue.VERIFY_CHAIN,
    queue=enqueue.TASK_QUEUES[enqueue.VERIFY_CHAIN],
    soft_time_limit=3600,
    time_limit=3660,
)
def verify_chain_task() -> bool:
    """Re-walk the whole hash chain and record the outcome as audit.verified."""
    return maintenance.chain_verify_and_record(actor_label="system (nightly verification)").ok


@shared_task(
    name=enqueue.VERIFY_CHAIN_RUN,
    queue=enqueue.TASK_QUEUES[enqueue.VERIFY_CHAIN_RUN],
    acks_late=True,
    soft_time_limit=3600,
    time_limit=3660,
)
def verify_chain_run_task(verification_id: str) -> bool | None:
    """Run one verification asked for on the Chain page (a second delivery does nothing)."""
    run = chain_runs.verification_run(verification_id=verification_id)
    return run.ok if run is not None else None


@shared_task(
    name=enqueue.WRITE_ANCHOR,
    queue=enqueue.TASK_QUEUES[enqueue.WRITE_ANCHOR],
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=60,
    retry_backoff_max=900,
    max_retries=5,
)
def write_anchor_task() -> int | None:
    """Anchor today's chain head outside the database (a rerun the same day writes nothing)."""
    anchor = anchors.anchor_write()
    return anchor.sequence if anchor else None
