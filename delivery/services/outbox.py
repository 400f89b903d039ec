"""The outbox: a plan's dispatches, batches and per-person rows, written before anything is sent.

The rows are committed before any send is queued, so a lost message or a dead worker leaves
nothing that the sweeper cannot find again. This module writes a snapshot chunk on every
database (the portable path); delivery.services.outbox_pg writes the same rows with SQL alone
on PostgreSQL. delivery.services.planner decides which path a chunk takes.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import (
    F,
    QuerySet,
)

from audiences.models import Recipient, RecipientChannel, SubscriptionState
from audiences.selectors import segments_recipients
from delivery import deptwide, messages, planning
from delivery.governor import content_fingerprint
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    Dispatch,
)
from delivery.quota import daily_cap_reachable, over_daily_cap
from notices.models import Notice, Tier


class SnapshotRaced(Exception):  # noqa: N818 - a state, like the dingtalk errors
    """Another planner moved the snapshot cursor first; this chunk's transaction rolls back."""


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
Person = tuple[int, str, int | None]  # recipient pk, DingTalk user id, district


def audience_recipients(notice: Notice) -> QuerySet[Recipient]:
    """The work-notification audience: the department's subscribed members for citywide,
    otherwise the members among the union of segments."""
    if notice.tier == Tier.CITYWIDE:
        return Recipient.objects.filter(
            department_id=notice.department_id,
            subscription_state=SubscriptionState.SUBSCRIBED,
            erased_at__isnull=True,
            channel=RecipientChannel.MEMBER,
        )
    segments = list(notice.segments.all())
    if not segments:
        return Recipient.objects.none()
    # Work notifications reach members only; followers go by the Service Window (channels).
    return segments_recipients(segments).filter(
        erased_at__isnull=True, channel=RecipientChannel.MEMBER
    )


def dispatch_for(plan: DeliveryPlan, notice: Notice, language: str, round_: int = 0) -> Dispatch:
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


def companion_dispatch_for(plan: DeliveryPlan, notice: Notice, language: str) -> Dispatch | None:
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


def mirror_batch(batch: Batch, companion: Dispatch, seq: int) -> Batch:
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


def size_broadcast(plan: DeliveryPlan, size: int) -> None:
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
    dispatch = dispatch_for(plan, notice, "both")
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


def reserve_seqs(dispatch_id: int, count: int) -> int:
    """Take ``count`` batch numbers of a dispatch (under its row lock); returns the first."""
    start = (
        Dispatch.objects.select_for_update()
        .filter(pk=dispatch_id)
        .values_list("next_seq", flat=True)
        .get()
    )
    Dispatch.objects.filter(pk=dispatch_id).update(next_seq=F("next_seq") + count)
    return int(start)


def insert_batches(plan: DeliveryPlan, batches: list[Batch]) -> None:
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


def _over_daily_cap(plan: DeliveryPlan, userids: list[str]) -> set[str]:
    """People of this chunk who already had the day's share of this app's notices."""
    if not daily_cap_reachable(plan.department_id):
        return set()
    return set(over_daily_cap(plan.department_id, userids))


def bulk_insert_deliveries(rows: list[DeliveryRow]) -> None:
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


def advance_cursor(plan: DeliveryPlan, *, to: int, finished: bool, rows: int) -> None:
    """Move the snapshot's cursor past this chunk, inside the chunk's transaction.

    A conditional update: when another planner moved it first, this chunk raises SnapshotRaced
    and its transaction rolls back, so two planners never write the same chunk.
    """
    moved = DeliveryPlan.objects.filter(
        pk=plan.pk, snapshot_cursor=plan.snapshot_cursor, snapshot_done=False
    ).update(snapshot_cursor=to, snapshot_done=finished, planned=F("planned") + rows)
    if moved != 1:
        raise SnapshotRaced(plan.pk)


def write_chunk(plan: DeliveryPlan, notice: Notice, size: int) -> tuple[list[int], bool]:
    """One snapshot chunk on any database: (the new batches' ids, whether the snapshot is done).

    Runs inside the caller's transaction (delivery.services.planner.plan_snapshot_chunk).
    """
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
    advance_cursor(plan, to=cursor, finished=finished, rows=len(rows))
    if plan.strategy == planning.Strategy.ORG_WIDE:
        _write_org_wide_rows(plan, notice, rows, finished)
        return [], finished
    deliveries: list[DeliveryRow] = []
    if dept_wide:
        # People no department-wide batch reaches (they joined since the plan) go on below.
        deliveries, rows = _dept_wide_deliveries(plan, notice, rows)
    capped = _over_daily_cap(plan, [row[1] for row in rows])
    by_language: dict[str, list[Person]] = defaultdict(list)
    for pk, userid, language, district, *_ in rows:
        if userid in capped:
            # DingTalk would drop them silently (143105): record it instead of sending.
            en = dispatch_for(plan, notice, "en").pk
            deliveries.append(
                (plan.pk, en, None, pk, userid, district, DeliveryState.FORBIDDEN, None)
            )
            continue
        by_language[messages.recipient_language(language, notice)].append((pk, userid, district))
    new_batches = _write_user_batches(plan, notice, by_language, deliveries)
    return [b.pk for b in new_batches], finished


def _write_org_wide_rows(
    plan: DeliveryPlan, notice: Notice, rows: list[Any], finished: bool
) -> None:
    """Everyone of the chunk points at the one organisation-wide batch."""
    dispatch = dispatch_for(plan, notice, "both")
    # Locked so a concurrent acceptance commits either before this chunk reads the
    # batch's status or after its people are written (then it moves them too).
    batch = Batch.objects.select_for_update().get(dispatch=dispatch, seq=0)
    accepted = batch.status == BatchStatus.ACCEPTED
    state = DeliveryState.ACCEPTED if accepted else DeliveryState.QUEUED
    at = batch.accepted_at if accepted else None
    bulk_insert_deliveries(
        [
            (plan.pk, dispatch.pk, batch.pk, pk, userid, district, state, at)
            for pk, userid, _language, district in rows
        ]
    )
    if finished:
        size_broadcast(plan, plan.planned + len(rows))


def _write_user_batches(
    plan: DeliveryPlan,
    notice: Notice,
    by_language: dict[str, list[Person]],
    deliveries: list[DeliveryRow],
) -> list[Batch]:
    """Batches of up to 100 people per language (one for per-person links), their companion
    cards' mirrors, and every person's row (``deliveries`` holds the rows decided already)."""
    per_call = 1 if plan.strategy == planning.Strategy.PER_PERSON else 100
    new_batches: list[Batch] = []
    pending: list[tuple[Batch, list[Person], Dispatch]] = []
    for language, people in sorted(by_language.items()):
        dispatch = dispatch_for(plan, notice, language)
        companion = companion_dispatch_for(plan, notice, language)
        groups = [people[i : i + per_call] for i in range(0, len(people), per_call)]
        start = reserve_seqs(dispatch.pk, len(groups))
        mirror_start = reserve_seqs(companion.pk, len(groups)) if companion else 0
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
                new_batches.append(mirror_batch(batch, companion, mirror_start + offset))
    insert_batches(plan, new_batches)
    for batch, group, dispatch in pending:
        for recipient_pk, userid, district in group:
            deliveries.append(
                (
                    plan.pk,
                    dispatch.pk,
                    batch.pk,
                    recipient_pk,
                    userid,
                    district,
                    DeliveryState.QUEUED,
                    None,
                )
            )
    bulk_insert_deliveries(deliveries)
    return new_batches
