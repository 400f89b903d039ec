"""Thin Celery tasks of the delivery engine: ids in, one service call, transient retries only.

Queues: citywide and urgent notices go to Queues.URGENT, everything else to Queues.SEND, so a
bulk send never delays an urgent one (each queue has its own workers); receipts go to
Queues.RECEIPTS. acks_late + reject_on_worker_lost are global settings; every task here is
idempotent (conditional claims), so a redelivered message is harmless.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task, shared_task
from django.conf import settings

from config.settings.celery import Queues
from delivery import services

logger = logging.getLogger("delivery.tasks")


def _countdown(seconds: float) -> float:
    # Capped far below the broker's visibility timeout. The jitter is small and additive: the
    # governor's wait is exact, and a late start wastes the per-minute budget it waited for.
    cap = float(getattr(settings, "DELIVERY_MAX_COUNTDOWN_S", 300))
    return min(cap, max(0.01, seconds)) + random.random() * 0.02  # noqa: S311 - jitter


def enqueue_batches(batch_ids: list[int], urgent: bool, countdown: float | None = None) -> None:
    send_batches_task.apply_async(
        args=(batch_ids,),
        queue=Queues.URGENT if urgent else Queues.SEND,
        priority=9 if urgent else 5,
        countdown=countdown or 0,
    )


@shared_task(name="delivery.plan_notice", queue=Queues.SEND)
def plan_notice_task(notice_id: int) -> int:
    """Plan a notice and enqueue its batches as the snapshot proceeds."""
    return services.plan_notice(notice_id)


@shared_task(bind=True, name="delivery.send_batches", queue=Queues.SEND, max_retries=None)
def send_batches_task(self: Task[Any, Any], batch_ids: list[int]) -> dict[str, int]:
    """Send a group of batches; the ones the governor holds back come back with a countdown."""
    report = services.batches_send([int(b) for b in batch_ids])
    summary = {
        "sent": report.sent,
        "skipped": report.skipped,
        "paused": report.paused,
        "failed": report.failed,
        "unknown": report.unknown,
        "retry": len(report.retry),
    }
    if report.retry:
        if getattr(self.request, "is_eager", False) or settings.CELERY_TASK_ALWAYS_EAGER:
            # Eager runs (tests) cannot wait; the sweeper re-enqueues the queued batches.
            return summary
        raise self.retry(
            args=(report.retry,), countdown=_countdown(report.retry_in), max_retries=200
        )
    return summary


@shared_task(name="delivery.poll_receipts", queue=Queues.RECEIPTS)
def poll_receipts_task() -> int:
    """Lease the due batches and enqueue their polls in groups of DELIVERY_RECEIPT_GROUP."""
    due = services.receipts_due()
    size = max(1, int(settings.DELIVERY_RECEIPT_GROUP))
    by_lease: dict[str, list[int]] = {}
    for batch_id, lease in due:
        by_lease.setdefault(lease, []).append(batch_id)
    for lease, ids in by_lease.items():
        for start in range(0, len(ids), size):
            poll_batch_receipts_task.apply_async(
                args=(ids[start : start + size], lease), queue=Queues.RECEIPTS
            )
    return len(due)


@shared_task(name="delivery.poll_batch_receipts", queue=Queues.RECEIPTS)
def poll_batch_receipts_task(batch_ids: list[int], lease: str | None = None) -> dict[str, int]:
    """Poll a group of batches' receipts; returns how many batches ended in each outcome."""
    outcomes = services.batches_poll_receipts([int(b) for b in batch_ids], lease=lease)
    summary: dict[str, int] = {}
    for outcome in outcomes.values():
        summary[outcome] = summary.get(outcome, 0) + 1
    return summary


@shared_task(name="delivery.sweep_dispatches", queue=Queues.URGENT)
def sweep_dispatches_task() -> dict[str, int]:
    return services.sweep()


@shared_task(name="delivery.send_reminders", queue=Queues.SEND)
def send_reminders_task() -> int:
    from delivery import followup

    return followup.reminders_due_send()


@shared_task(name="delivery.recall_notice", queue=Queues.URGENT)
def recall_notice_task(plan_id: int) -> int:
    from delivery import followup

    return followup.plan_recall_calls(plan_id)
