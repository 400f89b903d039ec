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
    # Capped far below the broker's visibility timeout, with jitter so workers do not align.
    cap = float(getattr(settings, "DELIVERY_MAX_COUNTDOWN_S", 300))
    return min(cap, max(0.05, seconds)) * (1 + random.random() * 0.1)  # noqa: S311 - jitter


def enqueue_batch(batch_id: int, urgent: bool, countdown: float | None = None) -> None:
    send_batch_task.apply_async(
        args=(batch_id,),
        queue=Queues.URGENT if urgent else Queues.SEND,
        priority=9 if urgent else 5,
        countdown=countdown or 0,
    )


@shared_task(name="delivery.plan_notice", queue=Queues.SEND)
def plan_notice_task(notice_id: int) -> int:
    """Plan a notice and enqueue its batches as the snapshot proceeds."""
    return services.plan_notice(notice_id)


@shared_task(bind=True, name="delivery.send_batch", queue=Queues.SEND, max_retries=None)
def send_batch_task(self: Task[Any, Any], batch_id: int) -> str:
    """Send one batch. Throttling waits are re-enqueued (the batch is back in queued state)."""
    outcome = services.batch_send(batch_id)
    if outcome.outcome == "retry":
        if getattr(self.request, "is_eager", False) or settings.CELERY_TASK_ALWAYS_EAGER:
            # Eager runs (tests) cannot wait; the sweeper re-enqueues the queued batch.
            return outcome.outcome
        raise self.retry(countdown=_countdown(outcome.retry_in), max_retries=200)
    return outcome.outcome


@shared_task(name="delivery.poll_receipts", queue=Queues.RECEIPTS)
def poll_receipts_task() -> int:
    """Enqueue one receipt poll per due batch."""
    due = services.receipts_due()
    for batch_id, lease in due:
        poll_batch_receipts_task.apply_async(args=(batch_id, lease), queue=Queues.RECEIPTS)
    return len(due)


@shared_task(name="delivery.poll_batch_receipts", queue=Queues.RECEIPTS)
def poll_batch_receipts_task(batch_id: int, lease: str | None = None) -> str:
    return services.batch_poll_receipts(batch_id, lease=lease)


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
