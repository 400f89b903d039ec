"""The one reader of delivery figures: every page's counts come from a plan's rollups.

The dashboard (and its JSON), the department summary and the receipt report's totals all read
``plan_rollup`` / ``rollup_for_plans`` here, never the per-person table, so they cannot
disagree and cost the same for ten people or a million. The rollups are kept by database
triggers (``delivery.rollup_sql``) as signed deltas; reading sums one plan's rows through
the (plan, kind, key) index, and folds them into one row per key (``compact``) once they
pile up. ``plan_drift`` recounts a plan from its people to check the triggers
(``manage.py rollup_check``, and the sweeper on a sample).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction

from delivery import rollup_sql
from delivery.models import DeliveryState

# Read by the pages; 'q' (per batch) is the triggers' own bookkeeping.
PAGE_KINDS = ("s", "d", "dr", "f", "m", "c", "o", "l", "ln", "b")
SUMMARY_KINDS = ("s", "m", "c")
DELIVERED_STATES = (DeliveryState.ACCEPTED, DeliveryState.READ, DeliveryState.UNREAD)
FAILED_STATES = (DeliveryState.FAILED, DeliveryState.INVALID, DeliveryState.FORBIDDEN)
# A plan whose rows of deltas exceed this is folded on its next read.
COMPACT_AFTER_ROWS = 400
_LOCK_SPACE = 0x5AB0  # pg_try_advisory_xact_lock(_LOCK_SPACE, plan id): one folder at a time


@dataclass
class Rollup:
    """One plan's (or several plans') figures, as counted by the triggers."""

    states: dict[str, int] = field(default_factory=dict)
    districts: dict[int | None, int] = field(default_factory=dict)
    district_reads: dict[int | None, int] = field(default_factory=dict)
    failures: dict[tuple[str, int | None], int] = field(default_factory=dict)
    read_minutes: dict[int, int] = field(default_factory=dict)  # Unix minute -> first reads
    confirmed: int = 0
    outreach_open: int = 0
    latency_s: int = 0  # acceptance to first read, summed over latency_n people
    latency_n: int = 0
    batches: dict[str, int] = field(default_factory=dict)

    @property
    def people(self) -> int:
        return sum(self.states.values())

    @property
    def queued(self) -> int:
        return self.states.get(DeliveryState.QUEUED, 0)

    @property
    def delivered(self) -> int:
        return sum(self.states.get(s, 0) for s in DELIVERED_STATES)

    @property
    def read(self) -> int:
        return sum(self.read_minutes.values())

    @property
    def avg_first_read_min(self) -> float | None:
        return round(self.latency_s / self.latency_n / 60.0, 1) if self.latency_n else None

    def read_series(self) -> list[tuple[datetime, int]]:
        """(minute, people who first read in it), in time order."""
        return [
            (datetime.fromtimestamp(minute * 60, tz=UTC), n)
            for minute, n in sorted(self.read_minutes.items())
            if n
        ]

    def open_batches(self) -> int:
        return sum(self.batches.get(s, 0) for s in ("queued", "claimed", "unknown"))


def _district(key: str) -> int | None:
    return None if key == "-" else int(key)


def _fold(rollup: Rollup, kind: str, key: str, n: int) -> None:
    if kind == "s":
        rollup.states[key] = rollup.states.get(key, 0) + n
    elif kind == "d":
        rollup.districts[_district(key)] = rollup.districts.get(_district(key), 0) + n
    elif kind == "dr":
        rollup.district_reads[_district(key)] = rollup.district_reads.get(_district(key), 0) + n
    elif kind == "f":
        state, _, code = key.partition(":")
        slot = (state, int(code) if code else None)
        rollup.failures[slot] = rollup.failures.get(slot, 0) + n
    elif kind == "m":
        rollup.read_minutes[int(key)] = rollup.read_minutes.get(int(key), 0) + n
    elif kind == "c":
        rollup.confirmed += n
    elif kind == "o":
        rollup.outreach_open += n
    elif kind == "l":
        rollup.latency_s += n
    elif kind == "ln":
        rollup.latency_n += n
    elif kind == "b":
        rollup.batches[key] = rollup.batches.get(key, 0) + n


def _nonzero(table: dict[Any, int]) -> dict[Any, int]:
    return {key: n for key, n in table.items() if n}


def _clean(rollup: Rollup) -> Rollup:
    """Keys whose deltas sum to nothing are left out, as if never counted."""
    rollup.states = _nonzero(rollup.states)
    rollup.districts = _nonzero(rollup.districts)
    rollup.district_reads = _nonzero(rollup.district_reads)
    rollup.failures = _nonzero(rollup.failures)
    rollup.read_minutes = _nonzero(rollup.read_minutes)
    rollup.batches = _nonzero(rollup.batches)
    return rollup


def _kinds_sql(kinds: Iterable[str]) -> tuple[str, list[str]]:
    kinds = list(kinds)
    return ", ".join(["%s"] * len(kinds)), kinds


def plan_rollup(plan_id: int, *, kinds: Iterable[str] = PAGE_KINDS) -> Rollup:
    """One plan's rollups: one indexed, grouped read of its tally (folded when it grew long)."""
    marks, params = _kinds_sql(kinds)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT kind, key, SUM(n), COUNT(*) FROM {rollup_sql.TALLY} "  # noqa: S608 - constant table name, values bound
            f"WHERE plan_id = %s AND kind IN ({marks}) GROUP BY kind, key",
            [plan_id, *params],
        )
        rows = cursor.fetchall()
    rollup = Rollup()
    deltas = 0
    for kind, key, n, count in rows:
        _fold(rollup, kind, key, int(n))
        deltas += int(count)
    if deltas > COMPACT_AFTER_ROWS + len(rows):
        compact(plan_id)
    return _clean(rollup)


def rollup_for_plans(plan_ids: list[int], *, kinds: Iterable[str] = SUMMARY_KINDS) -> Rollup:
    """Several plans' rollups added together (a department's summary)."""
    rollup = Rollup()
    if not plan_ids:
        return rollup
    marks, params = _kinds_sql(kinds)
    ids = ", ".join(["%s"] * len(plan_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT kind, key, SUM(n) FROM {rollup_sql.TALLY} "  # noqa: S608 - constant table name, values bound
            f"WHERE plan_id IN ({ids}) AND kind IN ({marks}) GROUP BY kind, key",
            [*plan_ids, *params],
        )
        for kind, key, n in cursor.fetchall():
            _fold(rollup, kind, key, int(n))
    return _clean(rollup)


def compact(plan_id: int) -> int:
    """Fold a plan's deltas into one row per key; returns the rows removed.

    On PostgreSQL one statement (DELETE ... RETURNING feeding the INSERT), so deltas committed
    meanwhile stay as they are and nothing is counted twice; an advisory lock keeps a second
    folder of the same plan from waiting on the first. SQLite has one writer at a time.
    """
    table = rollup_sql.TALLY
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [_LOCK_SPACE, plan_id])
            if not cursor.fetchone()[0]:
                return 0
            cursor.execute(
                f"WITH moved AS (DELETE FROM {table} WHERE plan_id = %s "  # noqa: S608 - constant table name
                "RETURNING kind, key, n), folded AS (INSERT INTO "
                f"{table} (plan_id, kind, key, n) SELECT %s, kind, key, SUM(n) FROM moved "
                "GROUP BY kind, key HAVING SUM(n) <> 0 RETURNING 1) "
                "SELECT (SELECT COUNT(*) FROM moved) - (SELECT COUNT(*) FROM folded)",
                [plan_id, plan_id],
            )
            return int(cursor.fetchone()[0])
        cursor.execute(f"SELECT MAX(id) FROM {table} WHERE plan_id = %s", [plan_id])  # noqa: S608
        top = cursor.fetchone()[0]
        if top is None:
            return 0
        cursor.execute(
            f"SELECT kind, key, SUM(n), COUNT(*) FROM {table} WHERE plan_id = %s AND id <= %s "  # noqa: S608
            "GROUP BY kind, key",
            [plan_id, top],
        )
        rows = cursor.fetchall()
        cursor.execute(f"DELETE FROM {table} WHERE plan_id = %s AND id <= %s", [plan_id, top])  # noqa: S608
        kept = [(plan_id, kind, key, n) for kind, key, n, _ in rows if n]
        cursor.executemany(
            f"INSERT INTO {table} (plan_id, kind, key, n) VALUES (%s, %s, %s, %s)",  # noqa: S608
            kept,
        )
        return sum(int(count) for *_, count in rows) - len(kept)


def plan_drift(plan_id: int) -> dict[tuple[str, str], int]:
    """What the recount from the plan's people says minus what the rollups say, per key.

    Empty when they agree. On PostgreSQL the recount and the rollups are read by one statement
    (one snapshot), so concurrent sending does not show as drift.
    """
    prefix, recount = rollup_sql.recount_sql(connection.vendor)
    current = f"SELECT plan_id, kind, key, -n FROM {rollup_sql.TALLY} WHERE plan_id = %s"  # noqa: S608
    sql = (
        f"{prefix}SELECT kind, key, SUM(n) FROM ({recount} UNION ALL {current}) z "  # noqa: S608
        "GROUP BY kind, key HAVING SUM(n) <> 0"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [plan_id] * sql.count("%s"))
        return {(kind, key): int(n) for kind, key, n in cursor.fetchall()}


def plan_repair(plan_id: int, drift: dict[tuple[str, str], int]) -> None:
    """Add the drift found by `plan_drift` as one more delta per key."""
    rows = [(plan_id, kind, key, n) for (kind, key), n in sorted(drift.items())]
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {rollup_sql.TALLY} (plan_id, kind, key, n) VALUES (%s, %s, %s, %s)",  # noqa: S608
                rows,
            )


def drift_summary(drift: dict[tuple[str, str], int]) -> dict[str, int]:
    """How far off each kind is (absolute deltas summed): for logs and the command."""
    totals: dict[str, int] = defaultdict(int)
    for (kind, _key), n in drift.items():
        totals[kind] += abs(n)
    return dict(totals)
