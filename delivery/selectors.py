"""Reads for the delivery pages: plans scoped to the user, and the dashboard's figures.

Another department's plan answers 404, like a missing one. Figures are computed with a few
grouped queries (no per-person rows in Python), so the dashboard stays cheap for a million.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncMinute
from django.http import Http404
from django.utils import timezone

from accounts import permissions as perms
from accounts.models import Department
from audiences.models import District
from common.i18n import in_reader_language
from delivery.messages import notice_from_token
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    PlanStatus,
    effective_accepted_at,
    effective_state,
)
from delivery.planning import strategy_label

UserLike = AbstractBaseUser | AnonymousUser

# The seed's claims for the channel (product.md): shown beside each notice's own figures.
REFERENCE = {"delivery_rate": 99.6, "reach_rate": 95.0, "avg_first_read_min": 3.2}
DELIVERED_STATES = (DeliveryState.ACCEPTED, DeliveryState.READ, DeliveryState.UNREAD)
FAILED_STATES = (DeliveryState.FAILED, DeliveryState.INVALID, DeliveryState.FORBIDDEN)
CHART_W, CHART_H = 600, 200


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


def _minutes(delta: timedelta) -> float:
    return round(delta.total_seconds() / 60.0, 1)


def read_curve(plan: DeliveryPlan) -> Curve:
    """Cumulative share of planned people who have read, by minute since the first acceptance."""
    start = plan.first_accepted_at
    reads = Delivery.objects.filter(plan=plan, first_read_at__isnull=False)
    total_read = reads.count()
    if start is None or total_read == 0 or plan.planned == 0:
        return Curve(f"0,{CHART_H} {CHART_W},{CHART_H}", 0, None, None)
    buckets = (
        reads.annotate(minute=TruncMinute("first_read_at"))
        .values("minute")
        .annotate(n=Count("pk"))
        .order_by("minute")
    )
    series: list[tuple[float, int]] = []
    running = 0
    for row in buckets:
        running += row["n"]
        minute = max(0.0, (row["minute"] - start).total_seconds() / 60.0 + 1)
        series.append((minute, running))
    extent = max(10, int(series[-1][0]) + 1)
    coords = [f"0,{CHART_H}"]
    for minute, count in series:
        x = round(minute / extent * CHART_W, 1)
        y = round(CHART_H - count / plan.planned * CHART_H, 1)
        coords.append(f"{x},{y}")
    median_row = reads.order_by("first_read_at").values_list("first_read_at", flat=True)[
        total_read // 2
    ]
    sample = [
        (r, a)
        for r, a in reads.annotate(sent_at=effective_accepted_at())
        .exclude(sent_at__isnull=True)
        .order_by("pk")
        .values_list("first_read_at", "sent_at")[:5000]
        if r is not None and a is not None
    ]
    avg = (
        sum(max(0.0, (r - a).total_seconds()) for r, a in sample) / len(sample) / 60.0
        if sample
        else None
    )
    return Curve(
        " ".join(coords),
        extent,
        _minutes(median_row - start) if median_row is not None else None,
        round(avg, 1) if avg is not None else None,
    )


def _pct(part: int, whole: int) -> float | None:
    return round(part * 100.0 / whole, 1) if whole else None


def _failure_rows(people: QuerySet[Delivery]) -> list[dict[str, Any]]:
    return [
        {"state": row["state"], "code": row["code"], "count": row["n"]}
        for row in people.filter(state__in=FAILED_STATES)
        .values("state", "code")
        .annotate(n=Count("pk"))
        .order_by("-n")
    ]


def _district_rows(people: QuerySet[Delivery]) -> list[dict[str, Any]]:
    names = {
        pk: in_reader_language(en, zh)
        for pk, en, zh in District.objects.values_list("pk", "name_en", "name_zh")
    }
    return [
        {
            "district": names.get(row["district_id"], "—") if row["district_id"] else "—",
            "planned": row["n"],
            "read": row["r"],
            "reach": _pct(row["r"], row["n"]),
        }
        for row in people.values("district_id")
        .annotate(n=Count("pk"), r=Count("pk", filter=Q(first_read_at__isnull=False)))
        .order_by("-n")[:30]
    ]


def plan_figures(plan: DeliveryPlan, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON-ready data."""
    moment = now or timezone.now()
    people = Delivery.objects.filter(plan=plan)
    states = dict(
        people.annotate(now_state=effective_state())
        .values("now_state")
        .annotate(n=Count("pk"))
        .values_list("now_state", "n")
    )
    planned = plan.planned
    queued = states.get(DeliveryState.QUEUED, 0)
    read = people.filter(first_read_at__isnull=False).count()
    confirmed = people.filter(confirmed_at__isnull=False).count()
    delivered = sum(states.get(s, 0) for s in DELIVERED_STATES)
    curve = read_curve(plan)
    per_minute = float(settings.DELIVERY_LIMITS["recipients_per_minute"])
    eta_s = queued / per_minute * 60.0 if plan.status == PlanStatus.SENDING and queued else 0.0
    open_batches = Batch.objects.filter(
        dispatch__plan=plan,
        status__in=(BatchStatus.QUEUED, BatchStatus.CLAIMED, BatchStatus.UNKNOWN),
    ).count()

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
        "open_batches": open_batches,
        "bars": {
            "accepted": width(delivered),
            "read": width(read),
            "confirmed": width(confirmed),
        },
        "delivery_rate": _pct(delivered, planned),
        "reach_rate": _pct(read, planned),
        "confirm_rate": _pct(confirmed, planned),
        "failures": _failure_rows(people),
        "districts": _district_rows(people),
        "curve": {
            "points": curve.points,
            "minutes": curve.minutes,
            "median_first_read_min": curve.median_first_read_min,
            "avg_first_read_min": curve.avg_first_read_min,
        },
        "eta_s": round(eta_s),
        "eta_at": (moment + timedelta(seconds=eta_s)).isoformat() if eta_s else None,
        "reference": REFERENCE,
        "reminders_sent": plan.reminders_sent,
        "outreach_open": people.filter(outreach="open").count(),
        "held": held_batches(plan),
        "updated_at": moment.isoformat(),
    }


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
    plans = DeliveryPlan.objects.filter(department=department)
    people = Delivery.objects.filter(plan__department=department)
    planned = people.count()
    delivered = people.filter(state__in=DELIVERED_STATES).count()
    read = people.filter(first_read_at__isnull=False).count()
    confirmed = people.filter(confirmed_at__isnull=False).count()
    return {
        "department": department,
        "notices": plans.count(),
        "sending": plans.filter(status__in=(PlanStatus.SENDING, PlanStatus.PAUSED)).count(),
        "planned": planned,
        "delivered": delivered,
        "read": read,
        "confirmed": confirmed,
        "delivery_rate": _pct(delivered, planned),
        "reach_rate": _pct(read, planned),
        "recent": list(plans.select_related("notice").order_by("-created_at")[:20]),
    }
