"""A snapshot chunk written by PostgreSQL itself: no recipient row passes through Python.

Used for organisation-wide sends and user batches of one message per language when nobody
can be at the day's per-person cap (pg_snapshot_fits); everything else takes the portable
path in delivery.services.outbox. The chunk's recipients land in a temporary table with their
message language and their rank within it; the batches are then one INSERT ... SELECT grouped
by rank / 100 (their user ids aggregated in order), and the people one INSERT ... SELECT
joined to their batch. Runs inside the caller's transaction, which also moves the cursor.
"""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from delivery import messages, planning
from delivery.models import Batch, BatchStatus, Delivery, DeliveryPlan, DeliveryState
from delivery.quota import daily_cap_reachable
from delivery.services.outbox import (
    advance_cursor,
    audience_recipients,
    dispatch_for,
    reserve_seqs,
    size_broadcast,
)
from notices.models import Notice

SNAPSHOT_TABLE = "delivery_snapshot_chunk"
# (language, people in the chunk, highest recipient pk) per message language
ChunkCounts = list[tuple[str, int, int]]


def pg_snapshot_fits(plan: DeliveryPlan, notice: Notice) -> bool:
    """Whether pg_snapshot_chunk can write this plan's chunk (else the portable path does).

    It writes organisation-wide rows and user batches of one message per language. It knows
    nothing of department-wide batches or companion cards (file and voice notices are rare and
    small), nor of the per-person daily cap, which only matters when it can be reached.
    """
    if plan.strategy == planning.Strategy.ORG_WIDE:
        return True  # the rows point at the one media batch; a companion needs none
    if plan.strategy == planning.Strategy.DEPT_WIDE or messages.has_companion(notice):
        return False
    return not daily_cap_reachable(plan.department_id)


def pg_snapshot_chunk(plan: DeliveryPlan, notice: Notice, size: int) -> tuple[list[int], bool]:
    """One snapshot chunk on PostgreSQL: (the new batches' ids, whether the snapshot is done).

    The temporary table is emptied as soon as the chunk is written, so the people's ids do not
    sit in the session until the commit.
    """
    written = _write(plan, notice, size)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {SNAPSHOT_TABLE}")
    return written


def _write(plan: DeliveryPlan, notice: Notice, size: int) -> tuple[list[int], bool]:
    counts = _fill_chunk_table(plan, notice, size)
    rows = sum(n for _, n, _ in counts)
    finished = rows < size
    cursor_to = max((top for _, _, top in counts), default=plan.snapshot_cursor)
    advance_cursor(plan, to=cursor_to, finished=finished, rows=rows)
    if plan.strategy == planning.Strategy.ORG_WIDE:
        _write_org_wide_rows(plan, notice)
        if finished:
            size_broadcast(plan, plan.planned + rows)
        return [], finished
    return _write_user_batches(plan, notice, counts), finished


def _fill_chunk_table(plan: DeliveryPlan, notice: Notice, size: int) -> ChunkCounts:
    """The chunk's people into the temporary table, ranked within their message language."""
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
        return [(str(lang), int(n), int(top)) for lang, n, top in cursor.fetchall()]


def _write_org_wide_rows(plan: DeliveryPlan, notice: Notice) -> None:
    """Everyone of the chunk points at the one organisation-wide batch."""
    dispatch = dispatch_for(plan, notice, "both")
    # Locked so a concurrent acceptance commits either before this chunk reads the
    # batch's status or after its people are written (then it moves them too).
    batch = Batch.objects.select_for_update().get(dispatch=dispatch, seq=0)
    accepted = batch.status == BatchStatus.ACCEPTED
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} (plan_id, dispatch_id, batch_id, "  # noqa: S608 - names from model metadata, values bound
            "recipient_id, dingtalk_user_id, district_id, state, accepted_at, reminders_sent, "
            "outreach, outreach_outcome) SELECT %s, %s, %s, pk, userid, district, %s, %s, 0, "
            f"'', '' FROM {SNAPSHOT_TABLE}",
            [
                plan.pk,
                dispatch.pk,
                batch.pk,
                DeliveryState.ACCEPTED if accepted else DeliveryState.QUEUED,
                batch.accepted_at if accepted else None,
            ],
        )


def _write_user_batches(plan: DeliveryPlan, notice: Notice, counts: ChunkCounts) -> list[int]:
    """The chunk's batches (one INSERT ... SELECT) and its people joined to them."""
    per_call = 1 if plan.strategy == planning.Strategy.PER_PERSON else 100
    layout: list[tuple[str, int, int]] = []  # language, dispatch id, first seq
    for language, n, _ in counts:
        dispatch = dispatch_for(plan, notice, language)
        layout.append((language, dispatch.pk, reserve_seqs(dispatch.pk, -(-n // per_call))))
    if not layout:
        return []
    values = ", ".join(["(%s::text, %s::bigint, %s::bigint)"] * len(layout))
    layout_params = [value for row in layout for value in row]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Batch._meta.db_table} (dispatch_id, seq, userids, dept_ids, to_all, "  # noqa: S608 - names from model metadata, values bound
            "size, status, urgent, attempts, claim_token, after_unknown, error_code, error, "
            "created_at, polls_done, receipts_done) "
            "SELECT m.dispatch_id, m.start + t.rn / %s, jsonb_agg(t.userid ORDER BY t.rn), "
            "'[]'::jsonb, false, count(*), %s, %s, 0, '', false, '', '', %s, 0, false "
            f"FROM {SNAPSHOT_TABLE} t JOIN (VALUES {values}) AS m(lang, dispatch_id, start) "
            "ON m.lang = t.lang GROUP BY m.dispatch_id, m.start + t.rn / %s "
            "RETURNING id, dispatch_id, seq",
            [per_call, BatchStatus.QUEUED, plan.urgent, timezone.now(), *layout_params, per_call],
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
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} (plan_id, dispatch_id, batch_id, "  # noqa: S608 - names from model metadata, values bound
            "recipient_id, dingtalk_user_id, district_id, state, reminders_sent, outreach, "
            "outreach_outcome) "
            "SELECT %s, b.dispatch_id, b.batch_id, t.pk, t.userid, t.district, %s, 0, '', '' "
            f"FROM {SNAPSHOT_TABLE} t JOIN unnest(%s::text[], %s::bigint[], %s::bigint[], "
            "%s::bigint[]) AS b(lang, slot, batch_id, dispatch_id) "
            "ON b.lang = t.lang AND b.slot = t.rn / %s",
            [
                plan.pk,
                DeliveryState.QUEUED,
                *([row[i] for row in slots] for i in range(4)),
                per_call,
            ],
        )
    return sorted(pk for _, _, pk, _ in slots)
