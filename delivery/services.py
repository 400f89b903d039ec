"""The delivery engine's writes: plan, send, reconcile, receipts, pause/resume, finish.

Rules that make "ran twice, sent once" hold:

- every status moves by a conditional UPDATE (``filter(pk=..., status=X).update(status=Y)``)
  and work continues only when exactly one row changed;
- the per-recipient rows and batches are the outbox: they are committed before any send is
  enqueued, and the sweeper re-enqueues whatever a lost message or a dead worker left behind;
- no transaction is open across a DingTalk call: a batch is claimed (commit), sent, and the
  outcome written (commit);
- a call whose outcome is ambiguous (read timeout, dropped connection, a worker killed during
  the call) marks its batch ``unknown``; it is resent with identical content, and DingTalk's
  duplicate-content drop (143106) in the resend's result shows who already had it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    DateTimeField,
    F,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_noop

from accounts import permissions as perms
from accounts.channel import client_for_department
from accounts.models import Department
from audiences.models import Recipient, SubscriptionState
from audiences.selectors import segments_recipients
from audit.services import audit_record
from common.errors import ApplicationError
from delivery import deptwide, media, messages, planning
from delivery.audit_actions import DeliveryAuditAction as Action
from delivery.governor import GovernorUnavailable, Grant, content_fingerprint, get_governor
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    Dispatch,
    PlanStatus,
)
from dingtalk.client import DingTalkClient
from dingtalk.errors import (
    DingTalkError,
    InvalidCredentials,
    InvalidRequest,
    PermissionDenied,
    QuotaExhausted,
    ResultUnavailable,
    Throttled,
    TransportError,
)
from notices.models import COMPANION_KINDS, Notice, Status, Tier

logger = logging.getLogger("delivery")

# Calls one governor decision may grant ahead: a grant not used (the group stopped early) is
# budget left unspent, never an overshoot.
GRANT_AHEAD = 20
QUOTA_USED_UP = gettext_noop("The month's DingTalk API quota is used up.")
FLOW_CONTROL_REQUEUE = frozenset({143103, 143104, 143203, 143204})
DUPLICATE_CONTENT = frozenset({143106, 143206})
PAUSING_ERRORS = (InvalidCredentials, PermissionDenied, QuotaExhausted)
# Enqueue hook: (batch_id, urgent) -> None; tasks.py installs the Celery one.
Enqueue = Callable[[int, bool], None]


class SnapshotRaced(Exception):  # noqa: N818 - a state, like the dingtalk errors
    """Another planner moved the snapshot cursor first; this chunk's transaction rolls back."""


@dataclass(frozen=True)
class SendOutcome:
    outcome: str  # sent | skipped | retry | paused | failed | unknown
    retry_in: float = 0.0
    detail: str = ""


def _now() -> datetime:
    return timezone.now()


def _time_scale() -> float:
    """Simulated seconds per real second: receipt schedules follow a sped-up simulator clock."""
    return max(float(getattr(settings, "DELIVERY_GOVERNOR_TIME_SCALE", 1.0)), 1e-9)


SEND_GROUP_MIN = 20


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


def _enqueue_batches(batch_ids: Iterable[tuple[int, bool]]) -> None:
    """Hand batches to the send tasks in groups (send_group_size), urgent ones apart."""
    from delivery.tasks import enqueue_batches

    size = send_group_size()
    groups: dict[bool, list[int]] = {True: [], False: []}
    for batch_id, urgent in batch_ids:
        group = groups[bool(urgent)]
        group.append(batch_id)
        if len(group) >= size:
            enqueue_batches(list(group), bool(urgent))
            group.clear()
    for urgent, group in groups.items():
        if group:
            enqueue_batches(group, urgent)


def _client(department: Department) -> DingTalkClient:
    return client_for_department(department)


def is_urgent(notice: Notice) -> bool:
    return notice.tier == Tier.CITYWIDE or notice.high_risk


# --- entry point from notices --------------------------------------------------------------


def dispatch_on_approved(notice_id: int) -> None:
    """Called by notices after the final approval commits: only enqueues the planner.

    If the broker is down the notice stays approved and the sweeper plans it later.
    """
    from delivery.tasks import plan_notice_task

    notice = Notice.objects.filter(pk=notice_id).only("tier", "high_risk").first()
    urgent = notice is not None and is_urgent(notice)
    try:
        plan_notice_task.apply_async(
            args=(notice_id,), queue=_queue(urgent), priority=9 if urgent else 5
        )
    except Exception:
        logger.exception("delivery: could not enqueue the plan of notice %s", notice_id)


def _queue(urgent: bool) -> str:
    from config.settings.celery import Queues

    return Queues.URGENT if urgent else Queues.SEND


# --- planning --------------------------------------------------------------------------------


def audience_recipients(notice: Notice) -> QuerySet[Recipient]:
    """Citywide: every subscribed recipient of the department; otherwise the union of segments."""
    if notice.tier == Tier.CITYWIDE:
        return Recipient.objects.filter(
            department_id=notice.department_id,
            subscription_state=SubscriptionState.SUBSCRIBED,
            erased_at__isnull=True,
        )
    segments = list(notice.segments.all())
    if not segments:
        return Recipient.objects.none()
    return segments_recipients(segments).filter(erased_at__isnull=True)


def org_wide_possible(notice: Notice) -> bool:
    """to_all_user reaches the whole DingTalk organisation: only when nobody there opted out."""
    if notice.tier != Tier.CITYWIDE or notice.requires_confirmation:
        return False
    others = Recipient.objects.filter(department_id=notice.department_id).exclude(
        subscription_state=SubscriptionState.SUBSCRIBED, erased_at__isnull=True
    )
    return not others.exists()


def org_wide_sends_today(department: Department) -> int:
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return Batch.objects.filter(
        dispatch__plan__department=department, to_all=True, created_at__gte=start
    ).count()


def choose_plan_strategy(notice: Notice) -> str:
    """The notice's send strategy (planning.choose_strategy on what the database says now).

    DingTalk allows three to_all_user calls a day, and a file or voice notice needs two (the
    media and its companion card), so it counts as one more used. The department layout
    (several queries) is only worked out when an organisation-wide send is out of the question.
    """
    possible = org_wide_possible(notice)
    used = 0
    if possible:
        used = org_wide_sends_today(notice.department) + int(messages.has_companion(notice))
    dept_ids = None
    if not possible or used >= planning.ORG_WIDE_SENDS_PER_DAY:
        dept_ids = deptwide.dept_wide_ids(notice)
    return planning.choose_strategy(
        tier=notice.tier,
        tracked=notice.tier != Tier.CITYWIDE,
        org_wide_possible=possible,
        dept_ids=dept_ids,
        personal_links=notice.requires_confirmation,
        org_wide_used_today=used,
    )


def _due(notice: Notice) -> bool:
    return notice.send_at is None or notice.send_at <= _now()


def plan_start(notice_id: int) -> DeliveryPlan | None:
    """Move an approved (or due scheduled) notice to sending and create its plan, once."""
    with transaction.atomic():
        notice = Notice.objects.select_related("department").filter(pk=notice_id).first()
        if notice is None:
            return None
        plan = DeliveryPlan.objects.filter(notice_id=notice_id).first()
        if plan is not None:
            return plan
        if notice.status not in (Status.APPROVED, Status.SCHEDULED) or not _due(notice):
            return None
        moved = Notice.objects.filter(
            pk=notice_id, status__in=(Status.APPROVED, Status.SCHEDULED)
        ).update(status=Status.SENDING, status_reason="", updated_at=_now())
        if moved != 1:
            return None
        strategy = choose_plan_strategy(notice)
        plan = DeliveryPlan.objects.create(
            notice=notice,
            department=notice.department,
            strategy=strategy,
            status=PlanStatus.SENDING,
            urgent=is_urgent(notice),
            approved_at=notice.approved_at,
            next_reminder_at=(
                _now() + timedelta(minutes=notice.remind_after_minutes)
                if notice.max_reminders and notice.remind_after_minutes
                else None
            ),
        )
        audit_record(
            actor=None,
            action=Action.DISPATCH_STARTED,
            target=notice,
            department=notice.department,
            data={"strategy": strategy, "version_hash": notice.version_hash},
        )
    return plan


def _dispatch(plan: DeliveryPlan, notice: Notice, language: str, round_: int = 0) -> Dispatch:
    message = messages.build_message(notice, language, round_)
    dispatch, _ = Dispatch.objects.get_or_create(
        plan=plan,
        language=language,
        round=round_,
        defaults={"message": message, "content_hash": content_fingerprint(message)},
    )
    return dispatch


# Companion cards. A file or voice message carries no text (delivery.messages), so each
# language's round-0 dispatch of such a notice has a companion dispatch ("en+t") holding the
# text card, and every batch of the media dispatch a mirror in it: the same people (or
# departments, or the whole organisation), created in the same transaction, so a person gets
# both messages or, until the batches go out, neither. The mirrors are ordinary round-0
# batches: claimed, sent, reconciled, polled, recalled and counted by plan_finish_if_complete
# like any other. The people's rows point at the media batch only, so a person's state is the
# media message's (accepted, failed); a read of either message marks them read (receipts
# match people by plan and user id), and a companion's flow-control drops are re-sent in a
# new companion batch without touching their rows. Reminders are text cards anyway.


def _companion_dispatch(plan: DeliveryPlan, notice: Notice, language: str) -> Dispatch | None:
    """The dispatch of the text card sent beside a language's media message, if any."""
    message = messages.companion_message(notice, language)
    if message is None:
        return None
    dispatch, _ = Dispatch.objects.get_or_create(
        plan=plan,
        language=messages.companion_language(language),
        round=0,
        defaults={"message": message, "content_hash": content_fingerprint(message)},
    )
    return dispatch


def _mirror(batch: Batch, companion: Dispatch, seq: int) -> Batch:
    """The companion batch of a media batch: the same recipients, the text card."""
    return Batch(
        dispatch=companion,
        seq=seq,
        userids=list(batch.userids),
        dept_ids=list(batch.dept_ids),
        to_all=batch.to_all,
        size=batch.size,
        urgent=batch.urgent,
    )


def plan_broadcast_batch(plan: DeliveryPlan, notice: Notice) -> list[Batch]:
    """The organisation-wide batch and its companion card's (file and voice notices).

    Created before the snapshot so they go out first; empty for every other strategy.
    """
    if plan.strategy != planning.Strategy.ORG_WIDE:
        return []
    batches: list[Batch] = []
    dispatches = [_dispatch(plan, notice, "both"), _companion_dispatch(plan, notice, "both")]
    for dispatch in dispatches:
        if dispatch is None:
            continue
        batch, _ = Batch.objects.get_or_create(
            dispatch=dispatch,
            seq=0,
            defaults={"to_all": True, "size": 0, "urgent": plan.urgent},
        )
        Dispatch.objects.filter(pk=dispatch.pk, next_seq=0).update(next_seq=1)
        batches.append(batch)
    return batches


def plan_dept_batches(plan: DeliveryPlan, notice: Notice) -> list[Batch]:
    """The department-wide batches (and their companions), created before the snapshot.

    Like the organisation-wide batch, they go out while the snapshot is still being written.
    The layout is worked out again from the directory as it is now (deptwide.dept_wide_plan):
    if the audience no longer maps onto departments (the directory or a subscription changed
    since plan_start chose the strategy), the plan falls back to user batches, which is safe
    because nothing has been created for it yet. The plan row is locked while deciding, so the
    fallback and the creation never both happen; the batches themselves are claimed by moving
    the dispatch's next_seq from 0, so a second planner creates nothing.
    Returns the plan's department-wide batches; empty for every other strategy.
    Audit: delivery.strategy_changed on a fallback.
    """
    if plan.strategy != planning.Strategy.DEPT_WIDE:
        return []
    made = Dispatch.objects.filter(plan=plan, language="both", round=0, next_seq__gt=0).exists()
    if not made:
        layout = deptwide.dept_wide_plan(notice)  # reads only, before any lock
        with transaction.atomic():
            current = DeliveryPlan.objects.select_for_update().get(pk=plan.pk)
            plan.strategy = current.strategy
            if current.strategy != planning.Strategy.DEPT_WIDE:
                return []
            if layout is None:
                _plan_fall_back(current, notice)
                plan.strategy = current.strategy
                return []
            _create_dept_batches(plan, notice, layout)
    return [
        batch
        for batch in Batch.objects.filter(
            dispatch__plan=plan,
            dispatch__round=0,
            dispatch__language__in=("both", messages.companion_language("both")),
        ).order_by("seq", "dispatch_id")
        if batch.dept_ids
    ]


def _create_dept_batches(plan: DeliveryPlan, notice: Notice, layout: deptwide.DeptWidePlan) -> None:
    """One batch per call of the layout (and its companion's), unless a planner made them."""
    dispatch = _dispatch(plan, notice, "both")
    claimed = Dispatch.objects.filter(pk=dispatch.pk, next_seq=0).update(
        next_seq=len(layout.groups)
    )
    if claimed != 1:
        return
    created = [
        Batch(
            dispatch=dispatch,
            seq=seq,
            dept_ids=list(group.dept_ids),
            size=group.size,
            urgent=plan.urgent,
        )
        for seq, group in enumerate(layout.groups)
    ]
    companion = _companion_dispatch(plan, notice, "both")
    if companion is not None:
        Dispatch.objects.filter(pk=companion.pk).update(next_seq=len(created))
        created += [_mirror(batch, companion, batch.seq) for batch in list(created)]
    Batch.objects.bulk_create(created)


def _plan_fall_back(plan: DeliveryPlan, notice: Notice) -> None:
    """Department-wide no longer fits the audience: send in user batches (inside a lock)."""
    moved = DeliveryPlan.objects.filter(pk=plan.pk, strategy=planning.Strategy.DEPT_WIDE).update(
        strategy=planning.Strategy.USER_BATCHES
    )
    if moved != 1:
        return
    plan.strategy = planning.Strategy.USER_BATCHES
    audit_record(
        actor=None,
        action=Action.STRATEGY_CHANGED,
        target=notice,
        department=plan.department,
        data={
            "from": planning.Strategy.DEPT_WIDE,
            "to": planning.Strategy.USER_BATCHES,
            "reason": "the audience no longer maps exactly onto DingTalk departments",
        },
    )


def plan_snapshot_chunk(plan_id: int, chunk: int | None = None) -> tuple[list[int], bool]:
    """Write the next chunk of recipients (and their batches); returns (batch ids, finished).

    Raises SnapshotRaced when another planner wrote this chunk first.

    The cursor moves with a conditional update inside the chunk's transaction, so two planners
    never write the same chunk: the second one's update matches nothing and rolls back.
    """
    with transaction.atomic():
        plan = DeliveryPlan.objects.select_related("notice", "department").get(pk=plan_id)
        if plan.snapshot_done:
            return [], True
        # A small first chunk puts the first batches on the wire while the rest is written.
        size = chunk or (
            int(settings.DELIVERY_SNAPSHOT_FIRST_CHUNK)
            if plan.snapshot_cursor == 0
            else int(settings.DELIVERY_SNAPSHOT_CHUNK)
        )
        notice = plan.notice
        if connection.vendor == "postgresql" and _sql_snapshot_fits(plan, notice):
            return _pg_snapshot_chunk(plan, notice, size)
        dept_wide = plan.strategy == planning.Strategy.DEPT_WIDE
        columns = ["pk", "dingtalk_user_id", "language", "district_id"]
        if dept_wide:
            columns.append("dingtalk_dept_ids")
        rows = list(
            audience_recipients(notice)
            .filter(pk__gt=plan.snapshot_cursor)
            .order_by("pk")
            .values_list(*columns)[:size]
        )
        finished = len(rows) < size
        cursor = rows[-1][0] if rows else plan.snapshot_cursor
        moved = DeliveryPlan.objects.filter(
            pk=plan.pk, snapshot_cursor=plan.snapshot_cursor, snapshot_done=False
        ).update(snapshot_cursor=cursor, snapshot_done=finished, planned=F("planned") + len(rows))
        if moved != 1:
            raise SnapshotRaced(plan_id)
        new_batches: list[Batch] = []
        deliveries: list[DeliveryRow] = []
        if plan.strategy == planning.Strategy.ORG_WIDE:
            dispatch = _dispatch(plan, notice, "both")
            # Locked so a concurrent acceptance commits either before this chunk reads the
            # batch's status or after its people are written (then it moves them too).
            batch = Batch.objects.select_for_update().get(dispatch=dispatch, seq=0)
            accepted = batch.status == BatchStatus.ACCEPTED
            state = DeliveryState.ACCEPTED if accepted else DeliveryState.QUEUED
            at = batch.accepted_at if accepted else None
            for pk, userid, _language, district in rows:
                deliveries.append((plan.pk, dispatch.pk, batch.pk, pk, userid, district, state, at))
            _bulk_insert_deliveries(deliveries)
            if finished:
                _size_broadcast(plan, plan.planned + len(rows))
            return [], finished
        if dept_wide:
            # People no department-wide batch reaches (they joined since the plan) go on below.
            deliveries, rows = _dept_wide_deliveries(plan, notice, rows)
        capped = _over_daily_cap(plan, [row[1] for row in rows])
        by_language: dict[str, list[tuple[int, str, int | None]]] = defaultdict(list)
        for pk, userid, language, district, *_ in rows:
            if userid in capped:
                # DingTalk would drop them silently (143105): record it instead of sending.
                deliveries.append(
                    (
                        plan.pk,
                        _dispatch(plan, notice, "en").pk,
                        None,
                        pk,
                        userid,
                        district,
                        DeliveryState.FORBIDDEN,
                        None,
                    )
                )
                continue
            by_language[messages.recipient_language(language, notice)].append(
                (pk, userid, district)
            )
        per_call = 1 if plan.strategy == planning.Strategy.PER_PERSON else 100
        pending: list[tuple[Batch, list[tuple[int, str, int | None]], Dispatch]] = []
        for language, people in sorted(by_language.items()):
            dispatch = _dispatch(plan, notice, language)
            companion = _companion_dispatch(plan, notice, language)
            groups = [people[i : i + per_call] for i in range(0, len(people), per_call)]
            start = _reserve_seqs(dispatch.pk, len(groups))
            mirror_start = _reserve_seqs(companion.pk, len(groups)) if companion else 0
            for offset, group in enumerate(groups):
                batch = Batch(
                    dispatch=dispatch,
                    seq=start + offset,
                    userids=[userid for _, userid, _ in group],
                    size=len(group),
                    urgent=plan.urgent,
                )
                new_batches.append(batch)
                pending.append((batch, group, dispatch))
                if companion is not None:
                    # Right behind its media batch, so the two usually go out together.
                    new_batches.append(_mirror(batch, companion, mirror_start + offset))
        _insert_batches(plan, new_batches)
        for batch, group, dispatch in pending:
            for recipient_pk, userid, person_district in group:
                deliveries.append(
                    (
                        plan.pk,
                        dispatch.pk,
                        batch.pk,
                        recipient_pk,
                        userid,
                        person_district,
                        DeliveryState.QUEUED,
                        None,
                    )
                )
        _bulk_insert_deliveries(deliveries)
    return [b.pk for b in new_batches], finished


def _sql_snapshot_fits(plan: DeliveryPlan, notice: Notice) -> bool:
    """Whether _pg_snapshot_chunk can write this plan's chunk (else the Python path does).

    It writes organisation-wide rows and user batches of one message per language. It knows
    nothing of department-wide batches or companion cards (file and voice notices are rare and
    small), nor of the per-person daily cap, which only matters when it can be reached.
    """
    if plan.strategy == planning.Strategy.ORG_WIDE:
        return True  # the rows point at the one media batch; a companion needs none
    if plan.strategy == planning.Strategy.DEPT_WIDE or messages.has_companion(notice):
        return False
    return not daily_cap_reachable(plan.department_id)


def _size_broadcast(plan: DeliveryPlan, size: int) -> None:
    """The organisation-wide batches' size once the snapshot has counted everyone."""
    Batch.objects.filter(dispatch__plan=plan, dispatch__round=0, to_all=True).update(size=size)


def _dept_wide_deliveries(
    plan: DeliveryPlan, notice: Notice, rows: list[Any]
) -> tuple[list[DeliveryRow], list[Any]]:
    """The chunk's people whom a department-wide batch reaches, and the rest.

    Each person is matched to the batch whose departments (or their ancestors) include one of
    theirs (deptwide.batch_assigner). Their row is accepted if that batch already is, else
    queued (its acceptance then moves it), failed if it failed. The batches are locked, as in
    the organisation-wide branch, so a concurrent acceptance commits either before their
    status is read or after the rows are written. Someone no batch reaches (joined, or moved
    to another department, since the plan) is returned for an ordinary user batch.
    """
    dispatch = _dispatch(plan, notice, "both")
    batches = {
        batch.pk: batch
        for batch in Batch.objects.select_for_update().filter(dispatch=dispatch).order_by("pk")
        if batch.dept_ids
    }
    assign = deptwide.batch_assigner(
        plan.department_id, [(pk, [int(d) for d in b.dept_ids]) for pk, b in batches.items()]
    )
    reached: list[DeliveryRow] = []
    rest: list[Any] = []
    for row in rows:
        pk, userid, _language, district, dept_ids = row
        batch_id = assign([int(d) for d in dept_ids or []])
        if batch_id is None:
            rest.append(row)
            continue
        batch = batches[batch_id]
        state, at = DeliveryState.QUEUED, None
        if batch.status == BatchStatus.ACCEPTED:
            state, at = DeliveryState.ACCEPTED, batch.accepted_at
        elif batch.status == BatchStatus.FAILED:
            state = DeliveryState.FAILED
        reached.append((plan.pk, dispatch.pk, batch_id, pk, userid, district, state, at))
    return reached, rest


def _reserve_seqs(dispatch_id: int, count: int) -> int:
    """Take ``count`` batch numbers of a dispatch (under its row lock); returns the first."""
    start = (
        Dispatch.objects.select_for_update()
        .filter(pk=dispatch_id)
        .values_list("next_seq", flat=True)
        .get()
    )
    Dispatch.objects.filter(pk=dispatch_id).update(next_seq=F("next_seq") + count)
    return int(start)


SNAPSHOT_TABLE = "delivery_snapshot_chunk"


def _pg_snapshot_chunk(plan: DeliveryPlan, notice: Notice, size: int) -> tuple[list[int], bool]:
    """One snapshot chunk on PostgreSQL (see :func:`_pg_snapshot_write`).

    The temporary table is emptied as soon as the chunk is written, so the people's ids do not
    sit in the session until the commit.
    """
    written = _pg_snapshot_write(plan, notice, size)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {SNAPSHOT_TABLE}")
    return written


def _pg_snapshot_write(plan: DeliveryPlan, notice: Notice, size: int) -> tuple[list[int], bool]:
    """One snapshot chunk written by the database itself (PostgreSQL): no row passes Python.

    The chunk's recipients land in a temporary table with their message language and their
    rank within it; the batches are then one INSERT ... SELECT grouped by rank / 100 (their
    user ids aggregated in order), and the people one INSERT ... SELECT joined to their batch.
    Runs inside the caller's transaction, which also moves the cursor.
    """
    table = SNAPSHOT_TABLE
    audience = (
        audience_recipients(notice)
        .filter(pk__gt=plan.snapshot_cursor)
        .order_by("pk")
        .values_list("pk", "dingtalk_user_id", "language", "district_id")[:size]
    )
    audience_sql, audience_params = audience.query.sql_with_params()
    language_of = [messages.recipient_language(p, notice) for p in ("en", "zh-hant", "both")]
    with connection.cursor() as cursor:
        # The chunk's commit does not wait for its 4 MB of WAL to reach the disk (27 ms a
        # chunk, 2.7 s a million people). Nothing is risked: a batch is sent only after a send
        # task's claim commits, and that synchronous commit flushes the WAL up to itself, this
        # chunk's rows included. A crash before then loses the chunk and its cursor move
        # together, and the planner writes the chunk again.
        cursor.execute("SET LOCAL synchronous_commit TO OFF")
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {table} (pk bigint, userid text, lang text, "
            "district bigint, rn bigint) ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"TRUNCATE {table}")
        cursor.execute(
            f"INSERT INTO {table} (pk, userid, lang, district, rn) "  # noqa: S608 - names from model metadata, values bound
            "SELECT pk, userid, lang, district, "
            "row_number() OVER (PARTITION BY lang ORDER BY pk) - 1 FROM ("
            "SELECT s.pk, s.userid, s.district, CASE s.language WHEN 'en' THEN %s "
            "WHEN 'zh-hant' THEN %s ELSE %s END AS lang "
            f"FROM ({audience_sql}) AS s(pk, userid, language, district)) AS m",
            [*language_of, *audience_params],
        )
        # Temporary tables are never analyzed by autovacuum: without figures the planner joined
        # the chunk to its batches by a nested loop (a million comparisons for 10,000 people,
        # 0.6 s a chunk) instead of a hash join (0.1 s). Only the join columns: ~7 ms a chunk.
        cursor.execute(f"ANALYZE {table} (lang, rn)")
        cursor.execute(f"SELECT lang, count(*), max(pk) FROM {table} GROUP BY lang ORDER BY lang")  # noqa: S608 - names from model metadata, values bound
        counts = [(str(lang), int(n), int(top)) for lang, n, top in cursor.fetchall()]
    rows = sum(n for _, n, _ in counts)
    finished = rows < size
    cursor_to = max((top for _, _, top in counts), default=plan.snapshot_cursor)
    moved = DeliveryPlan.objects.filter(
        pk=plan.pk, snapshot_cursor=plan.snapshot_cursor, snapshot_done=False
    ).update(snapshot_cursor=cursor_to, snapshot_done=finished, planned=F("planned") + rows)
    if moved != 1:
        raise SnapshotRaced(plan.pk)
    delivery_table = Delivery._meta.db_table
    batch_table = Batch._meta.db_table
    if plan.strategy == planning.Strategy.ORG_WIDE:
        dispatch = _dispatch(plan, notice, "both")
        # Locked so a concurrent acceptance commits either before this chunk reads the
        # batch's status or after its people are written (then it moves them too).
        batch = Batch.objects.select_for_update().get(dispatch=dispatch, seq=0)
        accepted = batch.status == BatchStatus.ACCEPTED
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {delivery_table} (plan_id, dispatch_id, batch_id, recipient_id, "  # noqa: S608 - names from model metadata, values bound
                "dingtalk_user_id, district_id, state, accepted_at, reminders_sent, outreach, "
                f"outreach_outcome) SELECT %s, %s, %s, pk, userid, district, %s, %s, 0, '', '' "
                f"FROM {table}",
                [
                    plan.pk,
                    dispatch.pk,
                    batch.pk,
                    DeliveryState.ACCEPTED if accepted else DeliveryState.QUEUED,
                    batch.accepted_at if accepted else None,
                ],
            )
        if finished:
            _size_broadcast(plan, plan.planned + rows)
        return [], finished
    per_call = 1 if plan.strategy == planning.Strategy.PER_PERSON else 100
    layout: list[tuple[str, int, int]] = []  # language, dispatch id, first seq
    for language, n, _ in counts:
        dispatch = _dispatch(plan, notice, language)
        layout.append((language, dispatch.pk, _reserve_seqs(dispatch.pk, -(-n // per_call))))
    if not layout:
        return [], finished
    values = ", ".join(["(%s::text, %s::bigint, %s::bigint)"] * len(layout))
    layout_params = [value for row in layout for value in row]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {batch_table} (dispatch_id, seq, userids, dept_ids, to_all, size, "  # noqa: S608 - names from model metadata, values bound
            "status, urgent, attempts, claim_token, after_unknown, error_code, error, "
            "created_at, polls_done, receipts_done) "
            "SELECT m.dispatch_id, m.start + t.rn / %s, jsonb_agg(t.userid ORDER BY t.rn), "
            "'[]'::jsonb, false, count(*), %s, %s, 0, '', false, '', '', %s, 0, false "
            f"FROM {table} t JOIN (VALUES {values}) AS m(lang, dispatch_id, start) "
            "ON m.lang = t.lang GROUP BY m.dispatch_id, m.start + t.rn / %s "
            "RETURNING id, dispatch_id, seq",
            [per_call, BatchStatus.QUEUED, plan.urgent, _now(), *layout_params, per_call],
        )
        made = cursor.fetchall()
        # Each batch by its language and slot (rank // per_call) in the chunk: the people join
        # it on those two plain keys, one hash probe each. (Joined on seq = start + rank //
        # per_call, the key mixed two tables and PostgreSQL could hash on the language only,
        # comparing every person with every batch of their language: half the insert's time.)
        by_dispatch = {dispatch_id: (language, start) for language, dispatch_id, start in layout}
        slots: list[tuple[str, int, int, int]] = []  # language, slot, batch id, dispatch id
        for pk, dispatch_id, seq in made:
            language, start = by_dispatch[int(dispatch_id)]
            slots.append((language, int(seq) - start, int(pk), int(dispatch_id)))
        batch_ids = sorted(pk for _, _, pk, _ in slots)
        cursor.execute(
            f"INSERT INTO {delivery_table} (plan_id, dispatch_id, batch_id, recipient_id, "  # noqa: S608 - names from model metadata, values bound
            "dingtalk_user_id, district_id, state, reminders_sent, outreach, outreach_outcome) "
            "SELECT %s, b.dispatch_id, b.batch_id, t.pk, t.userid, t.district, %s, 0, '', '' "
            f"FROM {table} t JOIN unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bigint[]) "
            "AS b(lang, slot, batch_id, dispatch_id) "
            "ON b.lang = t.lang AND b.slot = t.rn / %s",
            [
                plan.pk,
                DeliveryState.QUEUED,
                *([row[i] for row in slots] for i in range(4)),
                per_call,
            ],
        )
    return batch_ids, finished


# plan, dispatch, batch, recipient, DingTalk user id, district, state, accepted_at
DeliveryRow = tuple[int, int, int | None, int, str, int | None, str, datetime | None]
DELIVERY_COPY_COLUMNS = (
    "plan_id",
    "dispatch_id",
    "batch_id",
    "recipient_id",
    "dingtalk_user_id",
    "district_id",
    "state",
    "accepted_at",
    "reminders_sent",
    "outreach",
    "outreach_outcome",
)


def _insert_batches(plan: DeliveryPlan, batches: list[Batch]) -> None:
    """Insert a chunk's batches and give each its id.

    On PostgreSQL the ids are drawn from the table's sequence first and the rows COPYed (every
    column from the model's own field preparation); elsewhere a bulk INSERT, reading the ids
    back by natural key where the backend does not return them.
    """
    if connection.vendor == "postgresql" and len(batches) >= 20:
        table = Batch._meta.db_table
        fields = list(Batch._meta.concrete_fields)
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [table, len(batches)],
            )
            for batch, (pk,) in zip(batches, cursor.fetchall(), strict=True):
                batch.pk = pk
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for batch in batches:
                    copy.write_row(
                        [f.get_db_prep_save(f.pre_save(batch, True), connection) for f in fields]
                    )
        return
    Batch.objects.bulk_create(batches, batch_size=1000)
    if any(b.pk is None for b in batches):
        ids = {
            (d, s): batch_pk
            for d, s, batch_pk in Batch.objects.filter(
                dispatch__plan=plan, seq__in=[b.seq for b in batches]
            ).values_list("dispatch_id", "seq", "pk")
        }
        for b in batches:
            b.pk = ids[(b.dispatch_id, b.seq)]


def daily_cap_reachable(department_id: int) -> bool:
    """Whether anyone can have reached the per-person daily cap with this department's app.

    Each of today's notices reaches a person at most once (twice for a file or voice notice
    and its companion card) plus its reminders, so when their sum is under the cap nobody can
    be over it and the per-person count is skipped (on a million-person snapshot that count
    is most of the planner's time).
    """
    cap = int(settings.DELIVERY_LIMITS["per_person_daily"])
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    companion = Case(
        When(notice__kind__in=COMPANION_KINDS, then=Value(1)),
        default=Value(0),
    )
    bound = DeliveryPlan.objects.filter(
        department_id=department_id, created_at__gte=start
    ).aggregate(n=Sum(F("notice__max_reminders") + 1 + companion))["n"]
    return int(bound or 0) >= cap


def over_daily_cap(department_id: int, userids: list[str] | None = None) -> QuerySet[Any, str]:
    """DingTalk user ids (a values list) that already had the day's share of this app's notices.

    DingTalk caps each person at 500 notices a day per app and drops the rest silently; the
    governor's per-person limit (DELIVERY_LIMITS["per_person_daily"]) stays below it. Usable as
    a subquery; ``userids`` narrows it to those people.
    """
    cap = int(settings.DELIVERY_LIMITS["per_person_daily"])
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    people = Delivery.objects.filter(plan__department_id=department_id)
    if userids is not None:
        people = people.filter(dingtalk_user_id__in=userids)
    return (
        people.filter(
            Q(accepted_at__gte=start) | Q(accepted_at__isnull=True, batch__accepted_at__gte=start)
        )
        .values("dingtalk_user_id")
        .annotate(n=Count("pk"))
        .filter(n__gte=cap)
        .values_list("dingtalk_user_id", flat=True)
    )


def _over_daily_cap(plan: DeliveryPlan, userids: list[str]) -> set[str]:
    """People of this chunk who already had the day's share of this app's notices."""
    if not daily_cap_reachable(plan.department_id):
        return set()
    return set(over_daily_cap(plan.department_id, userids))


def _bulk_insert_deliveries(rows: list[DeliveryRow]) -> None:
    """COPY on PostgreSQL (one round trip, no model instances), bulk INSERT elsewhere."""
    if connection.vendor != "postgresql" or len(rows) < 500:
        Delivery.objects.bulk_create(
            [
                Delivery(
                    plan_id=plan,
                    dispatch_id=dispatch,
                    batch_id=batch,
                    recipient_id=recipient,
                    dingtalk_user_id=userid,
                    district_id=district,
                    state=state,
                    accepted_at=accepted_at,
                )
                for plan, dispatch, batch, recipient, userid, district, state, accepted_at in rows
            ],
            batch_size=2000,
        )
        return
    table = Delivery._meta.db_table
    columns = ", ".join(DELIVERY_COPY_COLUMNS)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor under Django's wrapper
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*row, 0, "", ""))


def plan_notice(notice_id: int) -> int:
    """Plan a notice end to end: start, then snapshot chunk by chunk, enqueuing as it goes.

    Returns the number of batches enqueued. Safe to run twice (and to resume after a crash:
    the cursor says where the snapshot stopped).
    """
    plan = plan_start(notice_id)
    if plan is None or plan.status not in (PlanStatus.SENDING, PlanStatus.PAUSED):
        return 0
    notice = plan.notice
    try:
        # Uploaded before any message is built; a transient DingTalkError raises for a retry.
        media.ensure_media(notice)
    except ApplicationError as exc:
        plan_pause(plan.pk, code=exc.code, reason=exc.message)
        return 0
    # Organisation- and department-wide calls go out before the snapshot is written.
    first = [*plan_broadcast_batch(plan, notice), *plan_dept_batches(plan, notice)]
    queued = [(batch.pk, plan.urgent) for batch in first if batch.status == BatchStatus.QUEUED]
    _enqueue_batches(queued)
    enqueued = len(queued)
    finished = plan.snapshot_done
    while not finished:
        try:
            batch_ids, finished = plan_snapshot_chunk(plan.pk)
        except SnapshotRaced:
            # Another planner holds this chunk (a redelivered message): let it finish.
            break
        _enqueue_batches((batch_id, plan.urgent) for batch_id in batch_ids)
        enqueued += len(batch_ids)
    if finished:
        refresh_statistics(plan.pk)
        plan_finish_if_complete(plan.pk)
    return enqueued


def refresh_statistics(plan_id: int) -> bool:
    """After a large snapshot, refresh PostgreSQL's statistics of the people and batch tables.

    A million rows written in a minute leave the query planner with figures from before them
    until autovacuum's next analyze (or never, where autovacuum is off). With stale figures
    the receipt polls' update by (plan, DingTalk user id) was planned as a scan of the whole
    plan: ten times slower, about 0.4 s instead of 0.04 s per group of 5,000 people. ANALYZE
    samples a fixed number of rows, so it costs a fraction of a second whatever the size.
    Returns whether it ran.
    """
    if connection.vendor != "postgresql":
        return False
    planned = DeliveryPlan.objects.filter(pk=plan_id).values_list("planned", flat=True).first()
    if (planned or 0) < int(settings.DELIVERY_ANALYZE_AFTER):
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Delivery._meta.db_table}, {Batch._meta.db_table}")
    return True


# --- sending ---------------------------------------------------------------------------------


def _release(batch_id: int, *, error: str = "", code: str = "") -> None:
    Batch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
        status=BatchStatus.QUEUED, error=error[:300], error_code=code[:40], claim_token=""
    )


@dataclass
class SendReport:
    """What one send task did with its batches; ``retry`` ids go back to the broker."""

    sent: int = 0
    skipped: int = 0
    paused: int = 0
    failed: int = 0
    unknown: int = 0
    retry: list[int] = field(default_factory=list)
    retry_in: float = 0.0
    detail: str = ""

    def outcome(self) -> SendOutcome:
        """The single-batch view of this report (one id in, one outcome out)."""
        for name in ("sent", "paused", "failed", "unknown"):
            if getattr(self, name):
                return SendOutcome(name, detail=self.detail)
        if self.retry:
            return SendOutcome("retry", retry_in=self.retry_in, detail=self.detail)
        return SendOutcome("skipped", detail=self.detail or "not queued or plan not sending")


def batches_claim(batch_ids: list[int]) -> list[Batch]:
    """Claim whichever of these batches are still queued (and whose plan still sends).

    One conditional UPDATE marks them with a fresh token; the token then reads back exactly the
    batches this call claimed, so two workers handed the same ids never share a batch. Re-queued
    flow-control drops and reminders go out after the plan itself is done; a paused plan's
    batches stay queued for the resume.
    """
    if not batch_ids:
        return []
    batches = sorted(_claim_rows(batch_ids), key=lambda b: (not b.urgent, b.dispatch_id, b.seq))
    if not batches:
        return []
    # A group's batches share one or two dispatches: each is read (with its plan, department
    # and notice) once and shared, not once per batch through a join, which cost a quarter of
    # a send task's time in decoding the same message and notice twenty times over.
    dispatches = Dispatch.objects.select_related("plan__department", "plan__notice").in_bulk(
        {batch.dispatch_id for batch in batches}
    )
    for batch in batches:
        batch.dispatch = dispatches[batch.dispatch_id]
    return batches


def _claim_rows(batch_ids: list[int]) -> list[Batch]:
    """The conditional claim itself: the batches it moved from queued to claimed.

    On PostgreSQL one UPDATE ... RETURNING both claims and reads them (a third of a send
    task's own time went into the ORM's update, then the read-back by token). Elsewhere the
    ORM's update marks them with a fresh token, which then reads back exactly these.
    """
    sendable = [PlanStatus.SENDING.value, PlanStatus.DONE.value]
    now = _now()
    token = uuid.uuid4().hex
    ids = sorted(set(batch_ids))  # rows locked in id order, as every claim does
    if connection.vendor == "postgresql":
        table = Batch._meta.db_table
        columns = ", ".join(
            f"b.{connection.ops.quote_name(f.column)}" for f in Batch._meta.concrete_fields
        )
        return list(
            Batch.objects.raw(
                f"UPDATE {table} AS b SET status = %s, claimed_at = %s, "  # noqa: S608 - names from model metadata, values bound
                "attempts = b.attempts + 1, claim_token = %s "
                f"FROM {Dispatch._meta.db_table} AS d "
                f"JOIN {DeliveryPlan._meta.db_table} AS p ON p.id = d.plan_id "
                "WHERE b.id = ANY(%s) AND b.status = %s AND d.id = b.dispatch_id "
                f"AND p.status = ANY(%s) RETURNING {columns}",
                [BatchStatus.CLAIMED, now, token, ids, BatchStatus.QUEUED, sendable],
            )
        )
    claimed = Batch.objects.filter(
        pk__in=ids, status=BatchStatus.QUEUED, dispatch__plan__status__in=sendable
    ).update(
        status=BatchStatus.CLAIMED, claimed_at=now, attempts=F("attempts") + 1, claim_token=token
    )
    if not claimed:
        return []
    return list(Batch.objects.filter(claim_token=token, status=BatchStatus.CLAIMED))


def batch_send(batch_id: int) -> SendOutcome:
    """Send one batch if it is still queued; record DingTalk's task id. Idempotent."""
    return batches_send([batch_id]).outcome()


def _app_key(department: Department) -> str:
    return department.dingtalk_app_key or f"department:{department.code}"


def _confirm_links(batches: list[Batch]) -> dict[int, str]:
    """Per-person confirmation links of one-person batches, read in one query."""
    wanted = [
        b for b in batches if b.userids and messages.CONFIRM_PLACEHOLDER in str(b.dispatch.message)
    ]
    if not wanted:
        return {}
    keys = {(b.dispatch.plan_id, str(b.userids[0])) for b in wanted}
    ids = {
        (plan_id, userid): pk
        for pk, plan_id, userid in Delivery.objects.filter(
            plan_id__in={plan for plan, _ in keys},
            dingtalk_user_id__in={userid for _, userid in keys},
        ).values_list("pk", "plan_id", "dingtalk_user_id")
    }
    return {b.pk: confirm_url(ids.get((b.dispatch.plan_id, str(b.userids[0])), 0)) for b in wanted}


def _grant_ahead() -> int:
    """Calls one governor decision may grant ahead of sending them.

    A granted call reaches DingTalk a little after its grant. Under DingTalk's real limits
    (20 calls a second) two calls of margin are all there is, so each call is granted on its
    own; with generous limits a decision covers a twentieth of a second's calls.
    """
    calls_per_second = int(settings.DELIVERY_LIMITS["calls_per_second"])
    if calls_per_second < 100:
        return 1
    return min(GRANT_AHEAD, calls_per_second // 20)


def batches_send(batch_ids: list[int], *, inline_wait_s: float | None = None) -> SendReport:
    """Send a group of batches with one claim and one commit per flush. Idempotent.

    The task's unit is a group of batches (tens of DingTalk calls): the claim is one UPDATE,
    and accepted outcomes are written together (``_record_accepted_many``) before any wait and
    at the end, so a crash leaves at most one flush's worth of claimed batches for the sweeper
    to reconcile (as unknown: resent, and DingTalk's duplicate-content drop shows who had it).

    The governor is asked before every call, for it and the next calls of the same app at once
    (GRANT_AHEAD): it grants the prefix that fits every limit now. A wait shorter than ``inline_wait_s``
    (DELIVERY_INLINE_WAIT_S) is slept through here, which keeps the per-minute budget fully
    used; a longer one gives the rest of the group back to the queue with that countdown, so a
    large paced send never holds a worker that another department's notice needs.
    """
    report = SendReport()
    claimed = batches_claim(batch_ids)
    report.skipped = len(batch_ids) - len(claimed)
    if not claimed:
        return report
    budget = float(settings.DELIVERY_INLINE_WAIT_S if inline_wait_s is None else inline_wait_s)
    flush_s = float(settings.DELIVERY_FLUSH_S)
    governor = get_governor()
    links = _confirm_links(claimed)
    clients: dict[int, DingTalkClient] = {}
    paused: set[int] = set()
    allowance: dict[str, int] = {}  # calls the governor granted ahead, per app
    grant_ahead = _grant_ahead()
    accepted: list[tuple[Batch, int]] = []
    pending = list(reversed(claimed))  # pop() takes them in order
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal accepted, last_flush
        if accepted:
            _record_accepted_many(accepted)
            report.sent += len(accepted)
        accepted = []
        last_flush = time.monotonic()

    def give_back(batches: list[Batch], wait_s: float, detail: str) -> None:
        for other in batches:
            _release(other.pk)
        report.retry.extend(b.pk for b in batches)
        report.retry_in = max(report.retry_in, wait_s)
        report.detail = detail

    while pending:
        batch = pending.pop()
        plan = batch.dispatch.plan
        if plan.pk in paused:
            _release(batch.pk)
            report.paused += 1
            continue
        department = plan.department
        app_key = _app_key(department)
        try:
            if allowance.get(app_key, 0) > 0:
                decision = Grant(1)
            else:
                # One governor decision for this call and the following ones of the same app.
                ahead = [batch]
                for later in reversed(pending):
                    if len(ahead) >= grant_ahead:
                        break
                    if _app_key(later.dispatch.plan.department) != app_key:
                        break
                    ahead.append(later)
                decision = governor.acquire_many(
                    app_key=app_key,
                    api="asyncsend_v2",
                    recipients=[max(b.size, 1) for b in ahead],
                    edition=department.dingtalk_edition,
                )
                allowance[app_key] = decision.granted
        except GovernorUnavailable as exc:
            _release(batch.pk)
            flush()
            plan_pause(plan.pk, code="governor_down", reason=str(exc))
            paused.add(plan.pk)
            report.paused += 1
            report.detail = "governor unavailable"
            continue
        if decision.granted < 1:
            if decision.reason == "monthly_quota":
                _release(batch.pk)
                flush()
                plan_pause(
                    plan.pk,
                    code="quota_exhausted",
                    reason=QUOTA_USED_UP,
                )
                paused.add(plan.pk)
                report.paused += 1
                report.detail = "quota"
                continue
            if decision.wait_s <= budget:
                flush()
                time.sleep(decision.wait_s)
                budget -= decision.wait_s
                pending.append(batch)
                continue
            flush()
            give_back([batch, *reversed(pending)], decision.wait_s, decision.reason)
            break
        allowance[app_key] -= 1
        outcome = _send_one(batch, clients, links, app_key)
        if isinstance(outcome, int):
            accepted.append((batch, outcome))
            if time.monotonic() - last_flush >= flush_s:
                flush()
            continue
        flush()
        report.detail = outcome.detail
        if outcome.outcome == "retry":
            give_back([batch, *reversed(pending)], outcome.retry_in, outcome.detail)
            break
        if outcome.outcome == "paused":
            paused.add(plan.pk)
            report.paused += 1
        elif outcome.outcome == "failed":
            report.failed += 1
        elif outcome.outcome == "unknown":
            report.unknown += 1
    flush()
    for plan_id in {b.dispatch.plan_id for b in claimed if b.dispatch.plan.snapshot_done}:
        plan_finish_if_complete(plan_id)
    return report


def _send_one(
    batch: Batch, clients: dict[int, DingTalkClient], links: dict[int, str], app_key: str
) -> int | SendOutcome:
    """One asyncsend_v2 call: DingTalk's task id, or the outcome of a call that did not go out.

    Everything but acceptance is written here (release, pause, failure, unknown); acceptances
    are written by the caller in groups.
    """
    plan = batch.dispatch.plan
    try:
        client = clients.get(plan.department_id)
        if client is None:
            client = clients[plan.department_id] = _client(plan.department)
        msg = batch.dispatch.message
        if batch.pk in links:
            msg = messages.personalise(msg, links[batch.pk])
        result = client.send(
            msg,
            userids=list(batch.userids),
            dept_ids=[int(d) for d in batch.dept_ids],
            to_all_user=batch.to_all,
        )
    except ApplicationError as exc:
        _release(batch.pk)
        plan_pause(plan.pk, code=exc.code, reason=exc.message)
        return SendOutcome("paused", detail=exc.code)
    except TransportError as exc:
        if exc.ambiguous:
            _mark_unknown(batch.pk, str(exc))
            return SendOutcome("unknown", detail=str(exc))
        _release(batch.pk, error=str(exc), code="transport")
        return SendOutcome("retry", retry_in=2.0, detail=str(exc))
    except Throttled as exc:
        _release(batch.pk, error=str(exc), code=str(exc.errcode or exc.scope))
        try:
            get_governor().pause(app_key=app_key, seconds=exc.retry_after)
        except GovernorUnavailable:
            logger.warning("delivery: governor down while pausing %s", app_key)
        return SendOutcome("retry", retry_in=exc.retry_after, detail=str(exc))
    except PAUSING_ERRORS as exc:
        _release(batch.pk, error=str(exc), code=str(exc.errcode or type(exc).__name__))
        plan_pause(plan.pk, code=type(exc).__name__, reason=_pause_text(exc))
        return SendOutcome("paused", detail=str(exc))
    except InvalidRequest as exc:
        if exc.errcode == media.UNKNOWN_MEDIA_ID and media.message_media_id(batch.dispatch.message):
            # The file is uploaded again and the plan resumes (media.renew_for_plan): its
            # people wait, they do not fail.
            _release(batch.pk, error=str(exc), code=str(exc.errcode))
            plan_pause(plan.pk, code=media.MEDIA_EXPIRED, reason=media.MEDIA_EXPIRED_REASON)
            return SendOutcome("paused", detail=str(exc))
        _fail_batch(batch.pk, exc)
        return SendOutcome("failed", detail=str(exc))
    except DingTalkError as exc:
        if exc.is_transient:
            _release(batch.pk, error=str(exc), code=str(exc.errcode or "transient"))
            return SendOutcome("retry", retry_in=2.0, detail=str(exc))
        _fail_batch(batch.pk, exc)
        return SendOutcome("failed", detail=str(exc))
    return result.task_id


def _pause_text(exc: DingTalkError) -> str:
    # Stored in English; pages translate them for the reader (DeliveryPlan.pause_reason_text).
    if isinstance(exc, InvalidCredentials):
        return gettext_noop(
            "DingTalk refused the department's app key or secret. Fix the credentials, then resume."
        )
    if isinstance(exc, QuotaExhausted):
        return QUOTA_USED_UP
    return gettext_noop(
        "DingTalk refused the app (revoked, or a permission or IP whitelist is missing)."
    )


def confirm_url(delivery_id: int) -> str:
    path = reverse("delivery:confirm", args=[messages.confirm_token(delivery_id)])
    return str(settings.DELIVERY_PUBLIC_BASE_URL).rstrip("/") + path


def _record_accepted(batch: Batch, task_id: int) -> None:
    _record_accepted_many([(batch, task_id)])


def _record_accepted_many(accepted: list[tuple[Batch, int]]) -> None:
    """Write a group of accepted calls in one transaction: batches, their people, the trail.

    A batch the sweeper declared unknown meanwhile (its claim went stale) is not moved; it only
    keeps its task id, which the sweeper then uses to record it as sent instead of resending.
    """
    now = _now()
    first_poll = now + timedelta(seconds=planning.RECEIPT_POLL_OFFSETS_S[0] / _time_scale())
    task_ids = {batch.pk: task_id for batch, task_id in accepted}
    with transaction.atomic():
        mine = _accept_claimed(task_ids, now, first_poll)
        for pk in sorted(set(task_ids) - mine):
            Batch.objects.filter(pk=pk, task_id__isnull=True).update(task_id=task_ids[pk])
        # The people's rows are not touched: acceptance is the batch's (models.effective_state).
        moved = [(batch, task_id) for batch, task_id in accepted if batch.pk in mine]
        by_plan: dict[int, list[tuple[Batch, int]]] = defaultdict(list)
        for batch, task_id in moved:
            by_plan[batch.dispatch.plan_id].append((batch, task_id))
        for group in by_plan.values():
            plan = group[0][0].dispatch.plan
            # Every batch outcome is on the trail, with DingTalk's task id for reconciliation;
            # one event per plan and flush lists the batches it covers.
            audit_record(
                actor=None,
                action=Action.BATCH_ACCEPTED,
                target=plan.notice,
                department=plan.department,
                data={
                    "size": sum(batch.size for batch, _ in group),
                    "batches": [
                        {
                            "batch": batch.pk,
                            "size": batch.size,
                            "task_id": task_id,
                            "round": batch.dispatch.round,
                        }
                        for batch, task_id in group
                    ],
                },
            )
    # After the commit, in its own statement: the plan row is never locked while batch rows
    # are (the planner locks them in the other order).
    for plan_id, group in by_plan.items():
        if group[0][0].dispatch.plan.first_accepted_at is None:
            DeliveryPlan.objects.filter(pk=plan_id, first_accepted_at__isnull=True).update(
                first_accepted_at=now
            )


def _accept_claimed(task_ids: dict[int, int], now: datetime, first_poll: datetime) -> set[int]:
    """Move the still-claimed batches among these to accepted with their task ids.

    Returns the ids it moved. The row locks are taken in id order (no deadlock between two
    flushes), as NO KEY UPDATE (no wait for the planner's key-share checks on new rows). On
    PostgreSQL it is one UPDATE ... FROM unnest(...) RETURNING: building the CASE expression
    through the ORM cost more than the statement itself, once per flush.
    """
    ids = sorted(task_ids)
    if connection.vendor == "postgresql":
        table = Batch._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH locked AS (SELECT id FROM {table} WHERE id = ANY(%s) AND status = %s "  # noqa: S608 - table name from model metadata
                "ORDER BY id FOR NO KEY UPDATE) "
                f"UPDATE {table} AS b SET status = %s, task_id = v.task_id, accepted_at = %s, "
                "next_poll_at = %s, error = '', error_code = '', claim_token = '' "
                "FROM locked, unnest(%s::bigint[], %s::bigint[]) AS v(id, task_id) "
                "WHERE b.id = locked.id AND b.id = v.id AND b.status = %s RETURNING b.id",
                [
                    ids,
                    BatchStatus.CLAIMED,
                    BatchStatus.ACCEPTED,
                    now,
                    first_poll,
                    ids,
                    [task_ids[pk] for pk in ids],
                    BatchStatus.CLAIMED,
                ],
            )
            return {row[0] for row in cursor.fetchall()}
    mine = set(
        Batch.objects.select_for_update(no_key=True)
        .filter(pk__in=ids, status=BatchStatus.CLAIMED)
        .values_list("pk", flat=True)
    )
    if mine:
        Batch.objects.filter(pk__in=mine, status=BatchStatus.CLAIMED).update(
            status=BatchStatus.ACCEPTED,
            task_id=Case(
                *(When(pk=pk, then=Value(task_ids[pk])) for pk in sorted(mine)),
                output_field=BigIntegerField(),
            ),
            accepted_at=now,
            next_poll_at=first_poll,
            error="",
            error_code="",
            claim_token="",
        )
    return mine


def _mark_unknown(batch_id: int, error: str) -> None:
    Batch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
        status=BatchStatus.UNKNOWN, error=error[:300], error_code="ambiguous"
    )


def _fail_batch(batch_id: int, exc: DingTalkError) -> None:
    with transaction.atomic():
        moved = Batch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
            status=BatchStatus.FAILED, error=str(exc)[:300], error_code=str(exc.errcode or "")
        )
        if moved != 1:
            return
        batch = Batch.objects.select_related("dispatch__plan__notice").get(pk=batch_id)
        if batch.dispatch.round == 0:
            # Found through delivery_unique_person_per_plan (the batch column has no index).
            Delivery.objects.filter(
                plan_id=batch.dispatch.plan_id,
                dingtalk_user_id__in=[str(u) for u in batch.userids],
                batch_id=batch_id,
                state=DeliveryState.QUEUED,
            ).update(state=DeliveryState.FAILED, code=exc.errcode)
        audit_record(
            actor=None,
            action=Action.BATCH_FAILED,
            target=batch.dispatch.plan.notice,
            department=batch.dispatch.plan.department_id and batch.dispatch.plan.department,
            data={
                "batch": batch_id,
                "size": batch.size,
                "errcode": exc.errcode,
                "error": str(exc)[:200],
            },
        )
    plan_finish_if_complete(batch.dispatch.plan_id)


# --- pause, resume, finish -----------------------------------------------------------------


def plan_pause(plan_id: int, *, code: str, reason: str) -> bool:
    """Pause a sending plan with a reason staff can act on; nothing sent is sent again."""
    with transaction.atomic():
        moved = DeliveryPlan.objects.filter(pk=plan_id, status=PlanStatus.SENDING).update(
            status=PlanStatus.PAUSED, pause_code=code[:40], pause_reason=reason[:300]
        )
        if moved != 1:
            return False
        plan = DeliveryPlan.objects.select_related("notice").get(pk=plan_id)
        Notice.objects.filter(pk=plan.notice_id, status=Status.SENDING).update(
            status=Status.PAUSED, status_reason=reason[:500], updated_at=_now()
        )
        audit_record(
            actor=None,
            action=Action.PAUSED,
            target=plan.notice,
            department=plan.department,
            data={"code": code, "reason": reason},
        )
    return True


def plan_resume(*, actor: Any, plan_id: int) -> int:
    """Resume a paused plan and re-enqueue what is still queued. Returns batches enqueued.

    ``actor`` None is the sweeper, once the cause is gone (``_pause_cleared``); a person needs
    the approve permission in the plan's department (PermissionDenied). A plan paused on a
    media id DingTalk forgot uploads the file again first (ApplicationError if that fails:
    the plan stays paused).
    """
    plan = DeliveryPlan.objects.select_related("department").get(pk=plan_id)
    if actor is not None:
        perms.require_department_perm(actor, perms.APPROVE_NOTICE, plan.department)
    if plan.status == PlanStatus.PAUSED and plan.pause_code == media.MEDIA_EXPIRED:
        media.renew_for_plan(plan_id)
    with transaction.atomic():
        moved = DeliveryPlan.objects.filter(pk=plan_id, status=PlanStatus.PAUSED).update(
            status=PlanStatus.SENDING, pause_code="", pause_reason=""
        )
        if moved != 1:
            return 0
        plan = DeliveryPlan.objects.select_related("notice").get(pk=plan_id)
        Notice.objects.filter(pk=plan.notice_id, status=Status.PAUSED).update(
            status=Status.SENDING, status_reason="", updated_at=_now()
        )
        audit_record(
            actor=actor, action=Action.RESUMED, target=plan.notice, department=plan.department
        )
    queued = list(
        Batch.objects.filter(dispatch__plan_id=plan_id, status=BatchStatus.QUEUED).values_list(
            "pk", "urgent"
        )
    )
    _enqueue_batches(queued)
    if not plan.snapshot_done:
        from delivery.tasks import plan_notice_task

        plan_notice_task.apply_async(args=(plan.notice_id,), queue=_queue(plan.urgent))
    plan_finish_if_complete(plan_id)
    return len(queued)


def plan_finish_if_complete(plan_id: int) -> bool:
    """Sending is over when the snapshot is done and no batch of round 0 is still open."""
    open_batches = Batch.objects.filter(
        dispatch__plan_id=plan_id,
        dispatch__round=0,
        status__in=(BatchStatus.QUEUED, BatchStatus.CLAIMED, BatchStatus.UNKNOWN),
    )
    if open_batches.exists():
        return False
    with transaction.atomic():
        moved = DeliveryPlan.objects.filter(
            pk=plan_id, status=PlanStatus.SENDING, snapshot_done=True
        ).update(status=PlanStatus.DONE, finished_at=_now())
        if moved != 1:
            return False
        plan = DeliveryPlan.objects.select_related("notice").get(pk=plan_id)
        failed = Batch.objects.filter(dispatch__plan_id=plan_id, status=BatchStatus.FAILED).count()
        final = Status.SENT_WITH_FAILURES if failed else Status.SENT
        Notice.objects.filter(pk=plan.notice_id, status=Status.SENDING).update(
            status=final, updated_at=_now()
        )
        counts = dict(
            Batch.objects.filter(dispatch__plan_id=plan_id)
            .values("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        audit_record(
            actor=None,
            action=Action.DISPATCH_FINISHED,
            target=plan.notice,
            department=plan.department,
            data={"planned": plan.planned, "batches": counts, "status": final},
        )
    return True


# --- receipts --------------------------------------------------------------------------------


RECEIPT_LEASE_S = 300


def receipts_due(*, now: datetime | None = None, limit: int = 20_000) -> list[tuple[int, str]]:
    """Lease the due batches to one poll each: (batch id, lease) pairs for the poll tasks.

    Moving next_poll_at to the lease means the next beat does not enqueue the same batch again
    while its poll waits in the queue; a lost poll message comes due again when the lease ends.
    """
    moment = now or _now()
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
class _Poll:
    batch: Batch
    outcome: str
    result: Any = None
    next_poll_at: datetime | None = None
    done: bool = False
    counted: bool = True  # the poll counts against the schedule (polls_done + 1)
    result_unread: bool = False


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
    moment = now or _now()
    claimed, outcomes = _claim_polls(batch_ids, moment, lease)
    if not claimed:
        return outcomes
    governor = get_governor()
    budget = float(settings.DELIVERY_INLINE_WAIT_S)
    clients: dict[int, DingTalkClient] = {}
    polls: list[_Poll] = []
    scale = _time_scale()
    allowance: dict[tuple[str, str], int] = {}
    grant_ahead = _grant_ahead()
    for index, batch in enumerate(claimed):
        accepted_at = batch.accepted_at or moment
        if (moment - accepted_at).total_seconds() * scale > planning.RECEIPT_WINDOW_S:
            polls.append(_Poll(batch, "expired", done=True, counted=False))
            continue
        department = batch.dispatch.plan.department
        api = "getsendresult" if batch.userids else "getsendprogress"
        key = (_app_key(department), api)
        try:
            decision = Grant(1)
            if allowance.get(key, 0) < 1:
                # One decision for this poll and the next ones (the group is one department's).
                ahead = [0] * min(grant_ahead, len(claimed) - index)
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
                    _Poll(
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
                polls.append(_Poll(rest, "throttled", next_poll_at=wait, counted=False))
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
        _enqueue_batches(requeue)
    return outcomes


def _poll_one(batch: Batch, clients: dict[int, DingTalkClient], moment: datetime) -> _Poll:
    """One getsendresult (or getsendprogress) call; nothing is written here."""
    assert batch.task_id is not None  # noqa: S101 - accepted batches always carry their task id
    department = batch.dispatch.plan.department
    scale = _time_scale()
    try:
        client = clients.get(department.pk)
        if client is None:
            client = clients[department.pk] = _client(department)
        if not batch.userids:
            progress = client.get_send_progress(batch.task_id)
            if progress.done:
                return _Poll(batch, "done", done=True)
            return _Poll(batch, "in_progress", next_poll_at=moment + timedelta(seconds=30 / scale))
        result = client.get_send_result(batch.task_id)
    except ResultUnavailable:
        return _Poll(
            batch,
            "in_progress",
            next_poll_at=moment + timedelta(seconds=30 / scale),
            counted=False,
        )
    except (DingTalkError, ApplicationError) as exc:
        logger.warning("delivery: receipts of batch %s failed: %s", batch.pk, exc)
        return _Poll(
            batch, "error", next_poll_at=moment + timedelta(seconds=60 / scale), counted=False
        )
    return _Poll(batch, "polled", result=result)


def _record_polls(polls: list[_Poll], moment: datetime) -> None:
    """Write a group's poll outcomes: people's states per plan, then each batch's schedule."""
    scale = _time_scale()
    with transaction.atomic():
        by_plan: dict[int, list[_Poll]] = defaultdict(list)
        for poll in polls:
            if poll.outcome == "polled":
                by_plan[poll.batch.dispatch.plan_id].append(poll)
        for plan_id, group in by_plan.items():
            _apply_results(plan_id, group, moment)
        for poll in polls:
            batch = poll.batch
            polls_done = batch.polls_done + int(poll.counted)
            if poll.outcome in ("polled", "requeued"):
                offset = planning.next_poll_offset(polls_done)
                settled = not poll.result_unread and poll.outcome != "requeued"
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
            polls_done=F("polls_done")
            + Case(
                When(pk__in=[p.batch.pk for p in polls if p.counted], then=Value(1)),
                default=Value(0),
            ),
        )


def _apply_results(plan_id: int, polls: list[_Poll], moment: datetime) -> None:
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
    already = sorted(
        u for u in forbidden if batch.after_unknown and codes.get(u) in DUPLICATE_CONTENT
    )
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
    if own_rows:
        people.filter(dingtalk_user_id__in=requeue_ids).update(
            state=DeliveryState.QUEUED, batch=new, code=None
        )
    return new.pk


# --- sweeper ---------------------------------------------------------------------------------


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Re-drive everything a lost message, a dead worker or a broker outage left behind.

    - approved notices with no plan (the broker was down at approval) and due scheduled ones;
    - plans whose snapshot stopped half-way;
    - batches still queued a while after creation (their message was lost);
    - batches claimed long ago (the worker died during the call): outcome unknown;
    - unknown batches: resent with identical content for DingTalk to reconcile;
    - paused plans whose cause has cleared.
    """
    moment = now or _now()
    stale = moment - timedelta(seconds=float(settings.DELIVERY_CLAIM_STALE_S))
    lost = moment - timedelta(seconds=float(settings.DELIVERY_QUEUED_STALE_S))
    counts = {"planned": 0, "requeued": 0, "unknown": 0, "resent": 0, "resumed": 0, "finished": 0}
    from delivery.tasks import plan_notice_task

    due = Notice.objects.filter(
        Q(status=Status.APPROVED) | Q(status=Status.SCHEDULED, send_at__lte=moment),
        delivery_plan__isnull=True,
    ).filter(Q(send_at__isnull=True) | Q(send_at__lte=moment))
    for notice_id, tier, high_risk in due.values_list("pk", "tier", "high_risk")[:100]:
        plan_notice_task.apply_async(
            args=(notice_id,), queue=_queue(tier == Tier.CITYWIDE or high_risk)
        )
        counts["planned"] += 1
    for notice_id, urgent in DeliveryPlan.objects.filter(
        status=PlanStatus.SENDING, snapshot_done=False, created_at__lte=lost
    ).values_list("notice_id", "urgent")[:100]:
        plan_notice_task.apply_async(args=(notice_id,), queue=_queue(urgent))
        counts["planned"] += 1
    counts["unknown"] = Batch.objects.filter(
        status=BatchStatus.CLAIMED, claimed_at__lt=stale
    ).update(status=BatchStatus.UNKNOWN, error_code="stale_claim")
    resend: list[tuple[int, bool]] = []
    for batch in Batch.objects.filter(status=BatchStatus.UNKNOWN).select_related(
        "dispatch__plan__department", "dispatch__plan__notice"
    )[:500]:
        if batch.task_id is not None:
            # The call did return a task id after all: it went out.
            Batch.objects.filter(pk=batch.pk, status=BatchStatus.UNKNOWN).update(
                status=BatchStatus.CLAIMED
            )
            _record_accepted(batch, batch.task_id)
            continue
        with transaction.atomic():
            moved = Batch.objects.filter(pk=batch.pk, status=BatchStatus.UNKNOWN).update(
                status=BatchStatus.QUEUED, after_unknown=True
            )
            if moved == 1:
                audit_record(
                    actor=None,
                    action=Action.BATCH_UNKNOWN,
                    target=batch.dispatch.plan.notice,
                    department=batch.dispatch.plan.department,
                    data={"batch": batch.pk, "size": batch.size, "error": batch.error},
                )
        if moved == 1:
            resend.append((batch.pk, batch.urgent))
    _enqueue_batches(resend)
    counts["resent"] = len(resend)
    # A deep queue is normal (the governor paces a large send); only a plan where nothing was
    # claimed lately has lost its messages, so only those are enqueued again.
    stalled = (
        DeliveryPlan.objects.filter(
            status__in=(PlanStatus.SENDING, PlanStatus.DONE),
            dispatches__batches__status=BatchStatus.QUEUED,
            dispatches__batches__created_at__lt=lost,
        )
        .exclude(dispatches__batches__claimed_at__gte=lost)
        .values_list("pk", flat=True)
        .distinct()[:50]
    )
    for plan_id in list(stalled):
        queued = list(
            Batch.objects.filter(dispatch__plan_id=plan_id, status=BatchStatus.QUEUED)
            .order_by("pk")
            .values_list("pk", "urgent")[:5000]
        )
        _enqueue_batches(queued)
        counts["requeued"] += len(queued)
    for plan in DeliveryPlan.objects.filter(status=PlanStatus.PAUSED).select_related("department"):
        if not _pause_cleared(plan):
            continue
        try:
            plan_resume(actor=None, plan_id=plan.pk)
        except ApplicationError as exc:
            logger.info("delivery: plan %s stays paused: %s", plan.pk, exc.message)
            continue
        counts["resumed"] += 1
    for plan_id in DeliveryPlan.objects.filter(
        status=PlanStatus.SENDING, snapshot_done=True
    ).values_list("pk", flat=True):
        counts["finished"] += int(plan_finish_if_complete(plan_id))
    from delivery.privacy import anonymise_late_deliveries

    counts["anonymised"] = anonymise_late_deliveries()
    return counts


def _pause_cleared(plan: DeliveryPlan) -> bool:
    """Whether the cause of a pause is gone (checked with exempt calls only). A media id
    DingTalk forgot is cleared by resuming: plan_resume uploads the file again."""
    if plan.pause_code == media.MEDIA_EXPIRED:
        return True
    governor = get_governor()
    if plan.pause_code == "governor_down":
        return governor.healthy()
    if plan.pause_code in ("quota_exhausted", "QuotaExhausted"):
        from delivery.quota import monthly_calls_left

        try:
            return monthly_calls_left(plan.department) > 0
        except GovernorUnavailable:
            return False
    if plan.pause_code in ("InvalidCredentials", "channel_unconfigured", "secret_unavailable"):
        try:
            _client(plan.department).get_access_token(force_refresh=True)
        except (DingTalkError, ApplicationError):
            return False
        return True
    return False
