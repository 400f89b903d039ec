"""Receipts: getsendresult (or getsendprogress) on DingTalk's schedule, and each person's state.

The beat task leases due batches (receipts_due); poll tasks call DingTalk one batch after
another, each call granted by the governor, and write a group's states in one transaction.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Case,
    DateTimeField,
    F,
    PositiveSmallIntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.channel import client_for_department
from common.errors import ApplicationError
from delivery import enqueue, messages, planning
from delivery.governor import (
    GovernorUnavailable,
    Grant,
    department_app_key,
    get_governor,
    grant_ahead,
    time_scale,
)
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryState,
    Dispatch,
)
from dingtalk.client import DingTalkClient
from dingtalk.errors import DingTalkError, ResultUnavailable

logger = logging.getLogger("delivery")


RECEIPT_LEASE_S = 300
# DingTalk's flow control dropped these people: they are sent again in a new batch.
FLOW_CONTROL_REQUEUE = frozenset({143103, 143104, 143203, 143204})
# The same content reached them already today (a resend of an unknown outcome).
DUPLICATE_CONTENT = frozenset({143106, 143206})


def receipts_due(*, now: datetime | None = None, limit: int = 20_000) -> list[tuple[int, str]]:
    """Lease the due batches to one poll each: (batch id, lease) pairs for the poll tasks.

    Moving next_poll_at to the lease means the next beat does not enqueue the same batch again
    while its poll waits in the queue; a lost poll message comes due again when the lease ends.
    """
    moment = now or timezone.now()
    ids = list(
        Batch.objects.filter(
            status=BatchStatus.ACCEPTED, receipts_done=False, next_poll_at__lte=moment
        )
        .order_by("next_poll_at")
        .values_list("pk", flat=True)[:limit]
    )
    lease = moment + timedelta(seconds=RECEIPT_LEASE_S)
    Batch.objects.filter(pk__in=ids, next_poll_at__lte=moment).update(next_poll_at=lease)
    return [(batch_id, lease.isoformat()) for batch_id in ids]


def batch_poll_receipts(
    batch_id: int, *, now: datetime | None = None, lease: str | None = None
) -> str:
    """Poll one batch's receipts (see :func:`batches_poll_receipts`); returns its outcome."""
    return batches_poll_receipts([batch_id], now=now, lease=lease).get(batch_id, "skipped")


@dataclass
class Poll:
    batch: Batch
    outcome: str
    result: Any = None
    next_poll_at: datetime | None = None
    done: bool = False
    counted: bool = True  # the poll counts against the schedule (polls_done + 1)
    result_unread: bool = False
    progress: int | None = None  # getsendprogress's percent (broadcast batches)


def _claim_polls(
    batch_ids: list[int], moment: datetime, lease: str | None
) -> tuple[list[Batch], dict[int, str]]:
    """The batches of this group that are due (or leased to this poll), claimed for 120 s."""
    outcomes: dict[int, str] = {}
    leased_at = datetime.fromisoformat(lease) if lease else None
    candidates = list(
        Batch.objects.filter(
            pk__in=batch_ids, status=BatchStatus.ACCEPTED, receipts_done=False
        ).values_list("pk", "next_poll_at")
    )
    due = [
        (pk, at)
        for pk, at in candidates
        if at is not None and ((leased_at is not None and at == leased_at) or at <= moment)
    ]
    for pk in batch_ids:
        outcomes[pk] = "skipped"
    if not due:
        return [], outcomes
    # Claim: a second poller of the same batches matches nothing. The claim's deadline is
    # unique to this call, so it also reads back exactly the batches claimed here.
    lease_until = moment + timedelta(seconds=120, microseconds=uuid.uuid4().int % 999_983)
    by_at: dict[datetime, list[int]] = defaultdict(list)
    for pk, at in due:
        by_at[at].append(pk)
    for at, pks in by_at.items():
        Batch.objects.filter(pk__in=pks, next_poll_at=at, receipts_done=False).update(
            next_poll_at=lease_until
        )
    claimed = list(
        Batch.objects.filter(pk__in=[pk for pk, _ in due], next_poll_at=lease_until)
        .select_related("dispatch__plan__department")
        .order_by("pk")
    )
    return claimed, outcomes


def batches_poll_receipts(
    batch_ids: list[int], *, now: datetime | None = None, lease: str | None = None
) -> dict[int, str]:
    """Poll a group of accepted batches' results (or progress) and record each person's state.

    ``lease`` is what receipts_due leased the batches with; without one a batch must be due.
    The calls go one after another (each asks the governor first); the people's states of the
    whole group are then written in one transaction, a handful of set-based UPDATEs per plan.
    Returns each batch's outcome: polled, done, expired, in_progress, throttled, error, skipped.
    """
    moment = now or timezone.now()
    claimed, outcomes = _claim_polls(batch_ids, moment, lease)
    if not claimed:
        return outcomes
    governor = get_governor()
    budget = float(settings.DELIVERY_INLINE_WAIT_S)
    clients: dict[int, DingTalkClient] = {}
    polls: list[Poll] = []
    scale = time_scale()
    allowance: dict[tuple[str, str], int] = {}
    ahead_max = grant_ahead()
    for index, batch in enumerate(claimed):
        accepted_at = batch.accepted_at or moment
        if (moment - accepted_at).total_seconds() * scale > planning.RECEIPT_WINDOW_S:
            polls.append(Poll(batch, "expired", done=True, counted=False))
            continue
        department = batch.dispatch.plan.department
        api = "getsendresult" if batch.userids else "getsendprogress"
        key = (department_app_key(department), api)
        try:
            decision = Grant(1)
            if allowance.get(key, 0) < 1:
                # One decision for this poll and the next ones (the group is one department's).
                ahead = [0] * min(ahead_max, len(claimed) - index)
                decision = governor.acquire_many(
                    app_key=key[0], api=api, recipients=ahead, edition=department.dingtalk_edition
                )
                while decision.granted < 1 and decision.wait_s <= budget:
                    time.sleep(decision.wait_s)
                    budget -= decision.wait_s
                    decision = governor.acquire_many(
                        app_key=key[0],
                        api=api,
                        recipients=ahead,
                        edition=department.dingtalk_edition,
                    )
                allowance[key] = decision.granted
        except GovernorUnavailable:
            for rest in claimed[index:]:
                polls.append(
                    Poll(
                        rest,
                        "governor_down",
                        next_poll_at=moment + timedelta(seconds=60),
                        counted=False,
                    )
                )
            break
        if decision.granted < 1:
            wait = moment + timedelta(seconds=max(1.0, decision.wait_s))
            for rest in claimed[index:]:
                polls.append(Poll(rest, "throttled", next_poll_at=wait, counted=False))
            break
        allowance[key] -= 1
        polls.append(_poll_one(batch, clients, moment))
    _record_polls(polls, moment)
    requeue = [(p.result, p.batch.urgent) for p in polls if p.outcome == "requeued"]
    for poll in polls:
        outcomes[poll.batch.pk] = "polled" if poll.outcome == "requeued" else poll.outcome
        if poll.outcome in ("polled", "requeued") and poll.done:
            outcomes[poll.batch.pk] = "done"
    if requeue:
        enqueue.send_batch_groups(requeue)
    return outcomes


def _poll_one(batch: Batch, clients: dict[int, DingTalkClient], moment: datetime) -> Poll:
    """One getsendresult (or getsendprogress) call; nothing is written here."""
    assert batch.task_id is not None  # noqa: S101 - accepted batches always carry their task id
    department = batch.dispatch.plan.department
    scale = time_scale()
    try:
        client = clients.get(department.pk)
        if client is None:
            client = clients[department.pk] = client_for_department(department)
        if not batch.userids:
            progress = client.get_send_progress(batch.task_id)
            percent = progress.progress_in_percent
            if progress.done:
                return Poll(batch, "done", done=True, progress=percent)
            return Poll(
                batch,
                "in_progress",
                next_poll_at=moment + timedelta(seconds=30 / scale),
                progress=percent,
            )
        result = client.get_send_result(batch.task_id)
    except ResultUnavailable:
        return Poll(
            batch,
            "in_progress",
            next_poll_at=moment + timedelta(seconds=30 / scale),
            counted=False,
        )
    except (DingTalkError, ApplicationError) as exc:
        logger.warning("delivery: receipts of batch %s failed: %s", batch.pk, exc)
        return Poll(
            batch, "error", next_poll_at=moment + timedelta(seconds=60 / scale), counted=False
        )
    return Poll(batch, "polled", result=result)


def _record_polls(polls: list[Poll], moment: datetime) -> None:
    """Write a group's poll outcomes: people's states per plan, then each batch's schedule."""
    scale = time_scale()
    with transaction.atomic():
        by_plan: dict[int, list[Poll]] = defaultdict(list)
        for poll in polls:
            if poll.outcome == "polled":
                by_plan[poll.batch.dispatch.plan_id].append(poll)
        for plan_id, group in by_plan.items():
            _apply_results(plan_id, group, moment)
        for poll in polls:
            batch = poll.batch
            polls_done = batch.polls_done + int(poll.counted)
            if poll.outcome in ("polled", "requeued"):
                offset = planning.next_poll_offset(polls_done, batch.dispatch.plan.fast_receipts)
                # Dropped people went into a new batch (once): with nobody left unread the
                # original batch is settled, whatever its later polls would repeat.
                settled = not poll.result_unread
                poll.done = settled or offset is None or offset > planning.RECEIPT_WINDOW_S
                accepted_at = batch.accepted_at or moment
                poll.next_poll_at = (
                    None if poll.done else accepted_at + timedelta(seconds=(offset or 0) / scale)
                )
            if poll.done:
                poll.next_poll_at = None
        # Each batch's next poll in one statement.
        Batch.objects.filter(pk__in=[poll.batch.pk for poll in polls]).update(
            receipts_done=Case(
                When(pk__in=[p.batch.pk for p in polls if p.done], then=Value(True)),
                default=Value(False),
            ),
            next_poll_at=Case(
                *(
                    When(pk=p.batch.pk, then=Value(p.next_poll_at))
                    for p in polls
                    if p.next_poll_at is not None
                ),
                default=Value(None),
                output_field=DateTimeField(),
            ),
            # When DingTalk last answered, and its progress figure (reach.plan_reach shows both).
            last_polled_at=Case(
                When(pk__in=[p.batch.pk for p in polls if p.counted], then=Value(moment)),
                default=F("last_polled_at"),
                output_field=DateTimeField(),
            ),
            send_progress=Case(
                *(
                    When(pk=p.batch.pk, then=Value(p.progress))
                    for p in polls
                    if p.progress is not None
                ),
                default=F("send_progress"),
                output_field=PositiveSmallIntegerField(),
            ),
            polls_done=F("polls_done")
            + Case(
                When(pk__in=[p.batch.pk for p in polls if p.counted], then=Value(1)),
                default=Value(0),
            ),
        )


def _apply_results(plan_id: int, polls: list[Poll], moment: datetime) -> None:
    """Write the getsendresult answers of one plan's batches into its people's rows."""
    people = Delivery.objects.filter(plan_id=plan_id)
    read: list[str] = []
    unread: list[str] = []
    for poll in polls:
        result = poll.result
        poll.result_unread = bool(result.unread)
        read.extend(result.read)
        # A companion card's "unread" says nothing of the media message the row follows.
        dispatch = poll.batch.dispatch
        if dispatch.round == 0 and not messages.is_companion(dispatch.language):
            unread.extend(result.unread)
    if read:
        people.filter(dingtalk_user_id__in=read).filter(
            ~Q(state=DeliveryState.READ) | Q(first_read_at__isnull=True)
        ).update(
            state=DeliveryState.READ,
            first_read_at=Coalesce(F("first_read_at"), Value(moment), output_field=DateTimeField()),
        )
    if unread:
        _mark_unread(plan_id, unread)
    for poll in polls:
        requeued = _apply_exceptions(poll.batch, poll.result, people)
        if requeued is not None:
            poll.outcome = "requeued"
            poll.result = requeued


def _mark_unread(plan_id: int, userids: list[str]) -> None:
    """Accepted (or still queued) people DingTalk reports delivered but unread.

    Thousands of ids per group: on PostgreSQL they travel as one array parameter instead of
    one parameter each.
    """
    waiting = (DeliveryState.ACCEPTED, DeliveryState.QUEUED)
    if connection.vendor != "postgresql":
        Delivery.objects.filter(
            plan_id=plan_id, dingtalk_user_id__in=userids, state__in=waiting
        ).update(state=DeliveryState.UNREAD)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Delivery._meta.db_table} SET state = %s WHERE plan_id = %s "  # noqa: S608 - table name from model metadata
            "AND dingtalk_user_id = ANY(%s) AND state = ANY(%s)",
            [DeliveryState.UNREAD, plan_id, userids, list(waiting)],
        )


def _apply_exceptions(batch: Batch, result: Any, people: QuerySet[Delivery]) -> int | None:
    """The rare per-person outcomes of one batch: failed, invalid, dropped, re-queued.

    Returns the id of a new batch for people DingTalk's flow control dropped (143103...).
    """
    codes = result.forbidden_codes()
    forbidden = set(result.forbidden_userids) | set(codes)
    requeue_ids = sorted(u for u in forbidden if codes.get(u) in FLOW_CONTROL_REQUEUE)
    # The same content reached them already today: they have the notice, whichever call
    # (an unknown outcome's first attempt, or an identical notice) brought it.
    already = sorted(u for u in forbidden if codes.get(u) in DUPLICATE_CONTENT)
    dropped = sorted(u for u in forbidden if u not in requeue_ids and u not in already)
    # People's rows follow their media batch; a companion card's outcome leaves them alone.
    own_rows = batch.dispatch.round == 0 and not messages.is_companion(batch.dispatch.language)
    if own_rows:
        if already:
            people.filter(dingtalk_user_id__in=already).exclude(state=DeliveryState.READ).update(
                state=DeliveryState.UNREAD
            )
        if result.failed:
            people.filter(dingtalk_user_id__in=result.failed).update(state=DeliveryState.FAILED)
        if result.invalid:
            people.filter(dingtalk_user_id__in=result.invalid).update(state=DeliveryState.INVALID)
        for userid in dropped:
            people.filter(dingtalk_user_id=userid).update(
                state=DeliveryState.FORBIDDEN, code=codes.get(userid)
            )
    if requeue_ids and batch.drops_requeued:
        # Every later poll of this batch reports the same drops: they went out once already.
        return None
    if requeue_ids:
        # Only people still on the plan under that id: an erased person's row has a token now,
        # and DingTalk's answer must not send to them again.
        requeue_ids = sorted(
            set(
                people.filter(dingtalk_user_id__in=requeue_ids).values_list(
                    "dingtalk_user_id", flat=True
                )
            )
        )
    if not requeue_ids:
        return None
    dispatch = Dispatch.objects.select_for_update().get(pk=batch.dispatch_id)
    new = Batch.objects.create(
        dispatch=dispatch,
        seq=dispatch.next_seq,
        userids=requeue_ids,
        size=len(requeue_ids),
        urgent=batch.urgent,
    )
    Dispatch.objects.filter(pk=dispatch.pk).update(next_seq=F("next_seq") + 1)
    Batch.objects.filter(pk=batch.pk).update(drops_requeued=True)
    if own_rows:
        people.filter(dingtalk_user_id__in=requeue_ids).update(
            state=DeliveryState.QUEUED, batch=new, code=None
        )
    return new.pk
