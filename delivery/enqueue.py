"""The only code that puts delivery work on a queue: by task name, on the queue each name lists.

delivery/tasks.py declares the tasks under these names; nothing here imports it, so any module
(notices on approval, the engine's stages, the sweeper) may call these functions. Urgent work
(citywide or high-risk notices) goes to Queues.URGENT with the higher priority, everything else
to Queues.SEND; receipts to Queues.RECEIPTS. A message lost here is found again by the sweeper
(delivery.services.sweeper): approved notices with no plan, stalled snapshots and batches
still queued are all re-driven from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings

from common.queueing import send_by_name
from config.settings.celery import Priority, Queues

logger = logging.getLogger("delivery.enqueue")

PLAN_NOTICE = "delivery.plan_notice"
SEND_BATCHES = "delivery.send_batches"
POLL_RECEIPTS = "delivery.poll_receipts"
POLL_BATCH_RECEIPTS = "delivery.poll_batch_receipts"
SWEEP_DISPATCHES = "delivery.sweep_dispatches"
SEND_REMINDERS = "delivery.send_reminders"
RECALL_NOTICE = "delivery.recall_notice"
SEND_SERVICE_WINDOW = "delivery.send_service_window"

# Each task name and the queue its task is declared on (tests/test_celery_queues.py checks both).
TASK_QUEUES: dict[str, str] = {
    PLAN_NOTICE: Queues.SEND,
    SEND_BATCHES: Queues.SEND,
    POLL_RECEIPTS: Queues.RECEIPTS,
    POLL_BATCH_RECEIPTS: Queues.RECEIPTS,
    SWEEP_DISPATCHES: Queues.URGENT,
    SEND_REMINDERS: Queues.SEND,
    RECALL_NOTICE: Queues.URGENT,
    SEND_SERVICE_WINDOW: Queues.SEND,
}

# A lower number goes first on both brokers (config.settings.celery.Priority).
URGENT_PRIORITY = Priority.URGENT
NORMAL_PRIORITY = Priority.NORMAL
# Batches per send task under DingTalk's own limits (see send_group_size).
SEND_GROUP_MIN = 20


def queue_for(urgent: bool) -> str:
    return Queues.URGENT if urgent else Queues.SEND


def priority_for(urgent: bool) -> int:
    return URGENT_PRIORITY if urgent else NORMAL_PRIORITY


def plan_notice(notice_id: int, *, urgent: bool) -> None:
    """Queue the planner of an approved notice. If the broker is down the notice stays approved
    (or its snapshot half-done) and the sweeper queues it again: nothing is lost by logging."""
    try:
        send_by_name(
            PLAN_NOTICE, (notice_id,), queue=queue_for(urgent), priority=priority_for(urgent)
        )
    except Exception:
        logger.exception("delivery: could not enqueue the plan of notice %s", notice_id)


def send_batches(batch_ids: list[int], *, urgent: bool, countdown: float = 0) -> None:
    """Queue one send task for a group of batches of the same urgency."""
    send_by_name(
        SEND_BATCHES,
        (batch_ids,),
        queue=queue_for(urgent),
        priority=priority_for(urgent),
        countdown=countdown,
    )


def send_service_window(batch_ids: Iterable[int], *, urgent: bool) -> None:
    """Queue one Service Window send per batch (delivery.services.service_window). A lost
    message leaves the batch queued; the sweeper queues it again."""
    for batch_id in batch_ids:
        try:
            send_by_name(
                SEND_SERVICE_WINDOW,
                (batch_id,),
                queue=queue_for(urgent),
                priority=priority_for(urgent),
            )
        except Exception:
            logger.exception("delivery: could not enqueue Service Window batch %s", batch_id)


def send_group_size() -> int:
    """Batches per send task: about one second's calls at the configured rate.

    Under DingTalk's own limits (18 calls a second, 49 calls of 100 people a minute) that is
    SEND_GROUP_MIN, 20. Where the limits are generous (the benchmark with the simulator's
    limits off, or raised limits) it grows to DELIVERY_SEND_GROUP, 50: fewer claims, commits
    and tasks per call, which measured 20% more calls a second at a million people. A task
    gives the rest of its group back at any long governor wait, whatever its size.
    """
    limits = settings.DELIVERY_LIMITS
    per_second = int(limits["calls_per_second"])
    batches_per_minute = int(limits["recipients_per_minute"]) // 100
    ceiling = max(1, int(settings.DELIVERY_SEND_GROUP))
    return min(ceiling, max(SEND_GROUP_MIN, min(per_second, batches_per_minute)))


def send_batch_groups(batches: Iterable[tuple[int, bool]]) -> None:
    """Hand (batch id, urgent) pairs to the send tasks in groups of send_group_size(), urgent
    ones apart."""
    size = send_group_size()
    groups: dict[bool, list[int]] = {True: [], False: []}
    for batch_id, urgent in batches:
        group = groups[bool(urgent)]
        group.append(batch_id)
        if len(group) >= size:
            send_batches(list(group), urgent=bool(urgent))
            group.clear()
    for urgent, group in groups.items():
        if group:
            send_batches(group, urgent=urgent)


def poll_batch_receipts(batch_ids: list[int], lease: str) -> None:
    """Queue the receipt poll of a group of leased batches."""
    send_by_name(POLL_BATCH_RECEIPTS, (batch_ids, lease), queue=Queues.RECEIPTS)


def recall_notice(plan_id: int) -> None:
    """Queue the recall calls of a plan whose recall was recorded."""
    send_by_name(RECALL_NOTICE, (plan_id,), queue=Queues.URGENT, priority=URGENT_PRIORITY)
