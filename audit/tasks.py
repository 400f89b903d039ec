"""Background work for the trail: large exports and the nightly chain verification."""

from __future__ import annotations

from celery import shared_task

from config.settings.celery import Queues


@shared_task(
    name="audit.export_events",
    queue=Queues.BULK,
    acks_late=True,
    # A million rows take about a minute as CSV and longer as XLSX; well inside these limits.
    soft_time_limit=3600,
    time_limit=3660,
)
def export_events_task(export_id: str) -> None:
    """Write one background export (idempotent: a second delivery finds it claimed or done)."""
    from audit.exports import export_run

    export_run(export_id=export_id)


@shared_task(name="audit.verify_chain", queue=Queues.BULK, soft_time_limit=3600, time_limit=3660)
def verify_chain_task() -> bool:
    """Re-walk the whole hash chain and record the outcome as audit.verified."""
    from audit.verification import chain_verify_and_record

    return chain_verify_and_record(actor_label="system (nightly verification)").ok
