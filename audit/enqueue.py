"""The only code that puts audit work on a queue: by task name, on the queue each name lists.

audit/tasks.py declares the tasks under these names; nothing here imports it. The nightly
verification is queued by Celery beat under VERIFY_CHAIN (config/settings/audit.py).
"""

from __future__ import annotations

from common.queueing import send_by_name
from config.settings.celery import Queues

EXPORT_EVENTS = "audit.export_events"
VERIFY_CHAIN = "audit.verify_chain"
VERIFY_CHAIN_RUN = "audit.verify_chain_run"
WRITE_ANCHOR = "audit.write_anchor"

# Each task name and the queue its task is declared on.
TASK_QUEUES: dict[str, str] = {
    EXPORT_EVENTS: Queues.BULK,
    VERIFY_CHAIN: Queues.BULK,
    VERIFY_CHAIN_RUN: Queues.BULK,
    WRITE_ANCHOR: Queues.BULK,
}


def export_events(export_id: str) -> None:
    """Queue the writing of one background export's file (audit.exports.export_run)."""
    send_by_name(EXPORT_EVENTS, (export_id,), queue=TASK_QUEUES[EXPORT_EVENTS])


def verify_chain_run(verification_id: str) -> None:
    """Queue one verification asked for on the Chain page (audit.chain_runs.verification_run)."""
    send_by_name(VERIFY_CHAIN_RUN, (verification_id,), queue=TASK_QUEUES[VERIFY_CHAIN_RUN])
