"""Reads for the delivery pages: plans scoped to the user, and the dashboard's figures.

Another department's plan answers 404, like a missing one. Figures come from the plans'
rollups (delivery.rollups), never the per-person table, so a page costs the same for ten
people or a million.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone, translation

from accounts import permissions as perms
from accounts.models import Department
from audiences.models import District
from common.i18n import in_reader_language
from delivery.messages import notice_from_token
from delivery.models import (
    Batch,
    BatchStatus,
    DeliveryPlan,
    PlanStatus,
)
from delivery.planning import strategy_label
from delivery.reach import plan_reach
from delivery.rollups import FAILED_STATES, Rollup, plan_rollup, rollup_for_plans

UserLike = AbstractBaseUser | AnonymousUser

# The seed's claims for the channel (product.md): shown beside each notice's own figures.
REFERENCE = {"delivery_rate": 99.6, "reach_rate": 95.0, "avg_first_read_min": 3.2}
CHART_W, CHART_H = 600, 200
# The y axis: share of planned people who have read, with the chart's y of each mark.
Y_TICKS = [{"pct": pct, "y": CHART_H - pct * CHART_H // 100} for pct in (0, 25, 50, 75, 100)]


def plan_for_public_token(token: str) -> DeliveryPlan | None:
    """The plan behind a public notice link (None when the link is bad or nothing was sent)."""
    notice_id = notice_from_token(token)
    if notice_id is None:
        return None
    return DeliveryPlan.objects.select_related("notice").filter(notice_id=notice_id).first()


def plan_list_for_user(*, user: UserLike) -> QuerySet[DeliveryPlan]:
    return DeliveryPlan.objects.filter(
        department__in=perms.departments_with_perm(user, perms.VIEW_NOTICES)
    ).select_related("notice", "department")


def plan_get_for_user(*, user: UserLike, notice_id: int) -> DeliveryPlan:
    plan = plan_list_for_user(user=user).filter(notice_id=notice_id).first()
    if plan is None:
        raise Http404("No such delivery.")
    return plan


def can_recall(*, user: UserLike, plan: DeliveryPlan) -> bool:
    return plan.status in (
        PlanStatus.SENDING,
        PlanStatus.PAUSED,
        PlanStatus.DONE,
    ) and perms.has_department_perm(user, perms.RECALL_NOTICE, plan.department)


@dataclass
class Curve:
    points: str  # SVG polyline points, x in minutes since first acceptance, y = share read
    minutes: int  # x-axis extent
    median_first_read_min: float | None
    avg_first_read_min: float | None
    table: list[dict[str, Any]]  # the same curve as rows, for the table alternative


def read_curve(plan: DeliveryPlan, rollup: Rollup | None = None) -> Curve:
    """Cumulative share of planned people who have read, by minute since the first acceptance.

    From the rollups' reads per minute (rollups.py): no per-person rows are read.
    """
    rollup = rollup if rollup is not None else plan_rollup(plan.pk)
    start = plan.first_accepted_at
    series_in = rollup.read_series()
    total_read = sum(n for _, n in series_in)
    if start is None or total_read == 0 or plan.planned == 0:
        return Curve(f"0,{CHART_H} {CHART_W},{CHART_H}", 0, None, None, [])
    series: list[tuple[float, int]] = []
    running = 0
    median: float | None = None
    for at, n in series_in:
        running += n
        minute = max(0.0, (at - start).total_seconds() / 60.0 + 1)
        series.append((minute, running))
        if median is None and running * 2 > total_read:
            median = round(minute, 1)
    extent = max(10, int(series[-1][0]) + 1)
    coords = [f"0,{CHART_H}"]
    table = []
    for minute, count in series:
        x = round(minute / extent * CHART_W, 1)
        y = round(CHART_H - count / plan.planned * CHART_H, 1)
        coords.append(f"{x},{y}")
        table.append(
            {"minute": round(minute, 1), "read": count, "share": _pct(count, plan.planned)}
        )
    return Curve(" ".join(coords), extent, median, rollup.avg_first_read_min, table[-60:])


def _pct(part: int, whole: int) -> float | None:
    return round(part * 100.0 / whole, 1) if whole else None


def _failure_rows(rollup: Rollup) -> list[dict[str, Any]]:
    rows = [
        {"state": state, "code": code, "count": n}
        for (state, code), n in rollup.failures.items()
        if state in FAILED_STATES
    ]
    return sorted(rows, key=lambda row: (-row["count"], row["state"], row["code"] or 0))


def _district_rows(rollup: Rollup) -> list[dict[str, Any]]:
    names = {
        pk: in_reader_language(en, zh)
        for pk, en, zh in District.objects.values_list("pk", "name_en", "name_zh")
    }
    ordered = sorted(rollup.districts.items(), key=lambda item: (-item[1], item[0] or 0))[:30]
    return [
        {
            "district": names.get(district, "—") if district else "—",
            "planned": n,
            "read": rollup.district_reads.get(district, 0),
            "reach": _pct(rollup.district_reads.get(district, 0), n),
        }
        for district, n in ordered
    ]


def dashboard_figures(plan: DeliveryPlan) -> dict[str, Any]:
    """plan_figures as the dashboard's JSON serves them: computed at most once every
    DELIVERY_DASHBOARD_CACHE_S seconds per plan and language, however many people watch (the
    permission check stays with each request; the figures are the same for everyone who may
    see the plan)."""
    seconds = int(settings.DELIVERY_DASHBOARD_CACHE_S)
    if seconds <= 0:
        return plan_figures(plan)
    key = f"delivery:figures:{plan.pk}:{translation.get_language()}"
    figures: dict[str, Any] | None = cache.get(key)
    if figures is None:
        figures = plan_figures(plan)
        cache.set(key, figures, seconds)
    return figures


def plan_figures(plan: DeliveryPlan, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON-ready data, from the plan's rollups."""
    moment = now or timezone.now()
    rollup = plan_rollup(plan.pk)
    planned = plan.planned
    queued = rollup.queued
    read = rollup.read
    confirmed = rollup.confirmed
    delivered = rollup.delivered
    curve = read_curve(plan, rollup)
    per_minute = float(settings.DELIVERY_LIMITS["recipients_per_minute"])
    eta_s = queued / per_minute * 60.0 if plan.status == PlanStatus.SENDING and queued else 0.0

    def width(n: int) -> float:
        return round(n * 100.0 / planned, 2) if planned else 0.0

    return {
        "notice": plan.notice_id,
        "status": plan.status,
        "status_label": str(PlanStatus(plan.status).label),
        "strategy": plan.strategy,
        "strategy_label": strategy_label(plan.strategy),
        "pause_reason": plan.pause_reason_text(),
        "planned": planned,
        "snapshot_done": plan.snapshot_done,
        "queued": queued,
        "accepted": delivered,
        "delivered": delivered,
        "read": read,
        "confirmed": confirmed,
        "open_batches": rollup.open_batches(),
        "bars": {
            "accepted": width(delivered),
            "read": width(read),
            "confirmed": width(confirmed),
        },
        "delivery_rate": _pct(delivered, planned),
        "reach_rate": _pct(read, planned),
        "confirm_rate": _pct(confirmed, planned),
        "failures": _failure_rows(rollup),
        "districts": _district_rows(rollup),
        "curve": {
            "points": curve.points,
            "minutes": curve.minutes,
            "median_first_read_min": curve.median_first_read_min,
            "avg_first_read_min": curve.avg_first_read_min,
            "table": curve.table,
            "x_ticks": _ticks(curve.minutes),
            "y_ticks": Y_TICKS,
        },
        "eta_s": round(eta_s),
        "eta_at": (moment + timedelta(seconds=eta_s)).isoformat() if eta_s else None,
        "reference": REFERENCE,
        "reminders_sent": plan.reminders_sent,
        "outreach_open": rollup.outreach_open,
        "held": held_batches(plan) if rollup.batches.get(BatchStatus.HELD) else [],
        "updated_at": moment.isoformat(),
        **plan_reach(plan),  # reach, per-person reads, getsendprogress, last and next poll
    }


def _ticks(extent: int) -> list[dict[str, float]]:
    """Five evenly spaced minute marks of the curve's x axis (x in chart units)."""
    if extent <= 0:
        return []
    return [{"minute": round(extent * i / 4, 1), "x": round(CHART_W * i / 4, 1)} for i in range(5)]


def held_batches(plan: DeliveryPlan) -> list[dict[str, Any]]:
    """Batches whose outcome is unknown and that wait for a supervisor (services.uncertain)."""
    return [
        {
            "batch": pk,
            "size": size,
            "first_attempt": since.isoformat() if since else None,
            "error": error,
        }
        for pk, size, since, error in Batch.objects.filter(
            dispatch__plan=plan, status=BatchStatus.HELD
        )
        .order_by("pk")
        .values_list("pk", "size", "uncertain_since", "error")[:200]
    ]


def department_summaries(*, user: UserLike) -> list[dict[str, Any]]:
    """Per department the user may see: totals over all its plans, and the latest plans."""
    result = []
    for department in perms.departments_with_perm(user, perms.VIEW_NOTICES).order_by("code"):
        result.append(department_summary(department))
    return result


def department_summary(department: Department) -> dict[str, Any]:
    """A department's totals over all its plans: the same rollups the dashboards read."""
    plans = DeliveryPlan.objects.filter(department=department)
    rollup = rollup_for_plans(list(plans.values_list("pk", flat=True)))
    planned = rollup.people
    delivered = rollup.delivered
    read = rollup.read
    return {
        "department": department,
        "notices": plans.count(),
        "sending": plans.filter(status__in=(PlanStatus.SENDING, PlanStatus.PAUSED)).count(),
        "planned": planned,
        "delivered": delivered,
        "read": read,
        "confirmed": rollup.confirmed,
        "delivery_rate": _pct(delivered, planned),
        "reach_rate": _pct(read, planned),
        "recent": list(plans.select_related("notice").order_by("-created_at")[:20]),
    }
