"""Thin Celery tasks of the delivery engine: ids in, one service call, transient retries only.

Each task is declared under its name in delivery.enqueue, which is the only code that queues
them (and chooses queue and priority). acks_late + reject_on_worker_lost are global settings;
every task here is idempotent (conditional claims), so a redelivered message is harmless.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task, shared_task
from django.conf import settings

from delivery import enqueue
from delivery.enqueue import TASK_QUEUES
from delivery.services import followup, planner, receipts, sender, service_window, sweeper
from dingtalk.errors import ServerError, Throttled

logger = logging.getLogger("delivery.tasks")


def _countdown(seconds: float) -> float:
    # Capped far below the broker's visibility timeout. The jitter is small and additive: the
    # governor's wait is exact, and a late start wastes the per-minute budget it waited for.
    cap = float(getattr(settings, "DELIVERY_MAX_COUNTDOWN_S", 300))
    return min(cap, max(0.01, seconds)) + random.random() * 0.02  # noqa: S311 - jitter


@shared_task(name=enqueue.PLAN_NOTICE, queue=TASK_QUEUES[enqueue.PLAN_NOTICE])
def plan_notice_task(notice_id: int) -> int:
    """Plan a notice and enqueue its batches as the snapshot proceeds."""
    return planner.plan_notice(notice_id)


@shared_task(
    bind=True,
    name=enqueue.SEND_BATCHES,
    queue=TASK_QUEUES[enqueue.SEND_BATCHES],
    max_retries=None,
)
def send_batches_task(self: Task[Any, Any], batch_ids: list[int]) -> dict[str, int]:
    """Send a group of batches; the ones the governor holds back come back with a countdown."""
    report = sender.batches_send([int(b) for b in batch_ids])
    summary = {
        "sent": report.sent,
        "skipped": report.skipped,
        "paused": report.paused,
        "failed": report.failed,
        "unknown": report.unknown,
        "retry": len(report.retry),
    }
    if report.retry:
        if getattr(self.request, "is_eager", False):
            # An eager run (tests, a call inside a request) cannot wait; the sweeper
            # re-enqueues the queued batches. A worker always retries by countdown.
            return summary
        raise self.retry(
            args=(report.retry,), countdown=_countdown(report.retry_in), max_retries=200
        )
    return summary


@shared_task(name=enqueue.POLL_RECEIPTS, queue=TASK_QUEUES[enqueue.POLL_RECEIPTS])
def poll_receipts_task() -> int:
    """Lease the due batches and enqueue their polls in groups of DELIVERY_RECEIPT_GROUP."""
    due = receipts.receipts_due()
    size = max(1, int(settings.DELIVERY_RECEIPT_GROUP))
    by_lease: dict[str, list[int]] = {}
    for batch_id, lease in due:
        by_lease.setdefault(lease, []).append(batch_id)
    for lease, ids in by_lease.items():
        for start in range(0, len(ids), size):
            enqueue.poll_batch_receipts(ids[start : start + size], lease)
    return len(due)


@shared_task(name=enqueue.POLL_BATCH_RECEIPTS, queue=TASK_QUEUES[enqueue.POLL_BATCH_RECEIPTS])
def poll_batch_receipts_task(batch_ids: list[int], lease: str | None = None) -> dict[str, int]:
    """Poll a group of batches' receipts; returns how many batches ended in each outcome."""
    outcomes = receipts.batches_poll_receipts([int(b) for b in batch_ids], lease=lease)
    summary: dict[str, int] = {}
    for outcome in outcomes.values():
        summary[outcome] = summary.get(outcome, 0) + 1
    return summary


@shared_task(name=enqueue.SWEEP_DISPATCHES, queue=TASK_QUEUES[enqueue.SWEEP_DISPATCHES])
def sweep_dispatches_task() -> dict[str, int]:
    return sweeper.sweep()


@shared_task(name=enqueue.SEND_REMINDERS, queue=TASK_QUEUES[enqueue.SEND_REMINDERS])
def send_reminders_task() -> int:
    return followup.reminders_due_send()


@shared_task(name=enqueue.RECALL_NOTICE, queue=TASK_QUEUES[enqueue.RECALL_NOTICE])
def recall_notice_task(plan_id: int) -> int:
    return followup.plan_recall_calls(plan_id)


@shared_task(
    bind=True,
    name=enqueue.SEND_SERVICE_WINDOW,
    queue=TASK_QUEUES[enqueue.SEND_SERVICE_WINDOW],
    autoretry_for=(Throttled, ServerError),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=8,
)
def send_service_window_task(self: Task[Any, Any], batch_id: int) -> str:
    """One Service Window send with the batch's own uuid (delivery.services.service_window);
    a second run finds nothing to claim, and a resent call is refused as uuid.repeat. Held
    back by the governor: tried again in a second (an eager run leaves it to the sweeper)."""
    outcome = service_window.sw_send_batch(int(batch_id))
    if outcome == "wait" and not getattr(self.request, "is_eager", False):
        raise self.retry(countdown=_countdown(1.0), max_retries=None)
    return outcome
