"""Traffic to integration addresses that do not exist: counted, and audited once per window.

Such requests are unauthenticated, so none of them writes to the audit trail by itself (anyone
could otherwise grow the trail without limit). Each is counted per client address and window
(UnknownTrafficWindow); a window that has ended becomes one integrations.unknown_traffic event
with its totals and busiest addresses, written by the next such request or by the purge task.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from audit.services import audit_record
from integrations.audit_actions import IntegrationAuditAction as Action
from integrations.models import UnknownTrafficWindow

OTHER_SOURCES = "other"
TOP_SOURCES = 20


def _window_start(now: dt.datetime) -> dt.datetime:
    length = settings.INTEGRATIONS_UNKNOWN_WINDOW_SECONDS
    epoch = int(now.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % length, tz=dt.UTC)


def unknown_traffic_count(*, source: str | None, now: dt.datetime) -> None:
    """Count one request to an unknown address; summarise windows that have ended."""
    window = _window_start(now)
    name = (source or "unknown")[:64]
    rows = UnknownTrafficWindow.objects.filter(window_start=window)
    with transaction.atomic():
        if not rows.filter(source=name).update(count=F("count") + 1):
            if rows.count() >= settings.INTEGRATIONS_UNKNOWN_MAX_SOURCES:
                name = OTHER_SOURCES
            try:
                with transaction.atomic():
                    UnknownTrafficWindow.objects.create(window_start=window, source=name, count=1)
            except IntegrityError:
                rows.filter(source=name).update(count=F("count") + 1)
    unknown_traffic_summarise(now=now)


def unknown_traffic_summarise(*, now: dt.datetime) -> int:
    """One audit event for each window that has ended; its counters are then deleted.

    Returns the number of events written. Rows are claimed with SKIP LOCKED (PostgreSQL), so two
    workers never summarise the same window.
    """
    current = _window_start(now)
    with transaction.atomic():
        ended = list(
            UnknownTrafficWindow.objects.select_for_update(skip_locked=True)
            .filter(window_start__lt=current)
            .order_by("window_start", "-count")
        )
        if not ended:
            return 0
        by_window: dict[dt.datetime, list[UnknownTrafficWindow]] = defaultdict(list)
        for row in ended:
            by_window[row.window_start].append(row)
        UnknownTrafficWindow.objects.filter(pk__in=[r.pk for r in ended]).delete()
        for window, rows in by_window.items():
            audit_record(
                actor=None,
                actor_label="unknown callers",
                action=Action.UNKNOWN_TRAFFIC,
                target_label=f"window {window:%Y-%m-%d %H:%M:%S} UTC",
                data={
                    "window_start": window.isoformat(),
                    "window_seconds": settings.INTEGRATIONS_UNKNOWN_WINDOW_SECONDS,
                    "requests": sum(r.count for r in rows),
                    "sources": len(rows),
                    "busiest": [[r.source, r.count] for r in rows[:TOP_SOURCES]],
                },
            )
    return len(by_window)
