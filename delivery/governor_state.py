"""What the database records of the governor's calls: its state, rebuilt after a store lost it.

:class:`delivery.governor.RedisGovernor` keeps its windows and month's counters in Redis, which
keeps nothing on disk. When it finds them gone (no epoch key), it rebuilds them from
:func:`recorded_state` before granting anything.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Q, Sum

from accounts.models import Department
from delivery.models import Batch, BatchStatus


@dataclass
class RecordedApp:
    """One app's calls as the database records them: recent sends and the month's calls."""

    # (epoch seconds, recipients, claimed batch id or 0) of recent asyncsend_v2 calls
    calls: list[tuple[float, int, int]]
    month_calls: int = 0


def recorded_state(
    now: float, *, horizon_s: float, app_key_of: Callable[[Department], str]
) -> dict[str, RecordedApp]:
    """Every app's recent sends and this month's metered calls, from the outbox.

    Recent sends: accepted batches inside the longest window, at their acceptance time (written
    just after the call, so a little late: the rebuilt window lets go a little later than
    DingTalk's), and claimed batches (a call may be under way) as if sent now, under their id:
    a claimed batch that asks for a grant again had no call under way, and its grant replaces
    the stand-in (``acquire_many``'s ``claims``), so it is not counted twice. The month's
    calls: every claim of a batch this month (a claim makes at most one call) plus every
    counted receipt poll; this over-counts refused claims, the safe side of a quota.
    """
    horizon = now - horizon_s
    month_start = _month_start(now)
    state: dict[str, RecordedApp] = {}
    departments = {d.pk: app_key_of(d) for d in Department.objects.all()}
    recent = Batch.objects.filter(
        Q(status=BatchStatus.ACCEPTED, accepted_at__gte=_aware(horizon))
        | Q(status=BatchStatus.CLAIMED)
    ).values_list("pk", "dispatch__plan__department_id", "status", "accepted_at", "size")
    for batch_id, department_id, status, accepted_at, size in recent.iterator():
        app = state.setdefault(departments.get(department_id, ""), RecordedApp([]))
        claimed = status == BatchStatus.CLAIMED or accepted_at is None
        at = now if accepted_at is None or claimed else accepted_at.timestamp()
        app.calls.append((at, max(int(size), 1), int(batch_id) if claimed else 0))
    month = (
        Batch.objects.filter(claimed_at__gte=_aware(month_start))
        .values("dispatch__plan__department_id")
        .annotate(claims=Sum("attempts"), polls=Sum("polls_done"))
    )
    for row in month:
        app = state.setdefault(
            departments.get(row["dispatch__plan__department_id"], ""), RecordedApp([])
        )
        app.month_calls += int(row["claims"] or 0) + int(row["polls"] or 0)
    state.pop("", None)
    return state


def _month_start(now: float) -> float:
    """The first second of this month in China Standard Time (UTC+8), DingTalk's months."""
    local = time.gmtime(now + 8 * 3600)
    return calendar.timegm((local.tm_year, local.tm_mon, 1, 0, 0, 0)) - 8 * 3600


def _aware(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=UTC)
