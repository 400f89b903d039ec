"""What DingTalk still allows a department's app (dingtalk-api.md §9): the month's metered calls,
today's organisation-wide sends and the per-person daily cap.

Standard edition: 5,000 metered calls a month; professional: 200,000. Token and directory
calls are exempt. Every metered call this portal makes goes through the rate governor, which
counts it; these functions read that count. Organisation-wide sends (three a day) and each
person's notices today are read from the outbox (batches and people's rows).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Case, Count, F, Q, QuerySet, Sum, Value, When
from django.utils import timezone

from accounts.models import Department
from delivery.governor import department_app_key, edition_quota, get_governor
from delivery.models import Batch, Delivery, DeliveryPlan
from notices.models import COMPANION_KINDS


def monthly_quota(department: Department) -> int:
    return edition_quota(department.dingtalk_edition)


def monthly_calls_used(department: Department) -> int:
    """Metered calls counted this month (China Standard Time months, like DingTalk's).

    Raises delivery.governor.GovernorUnavailable when the governor's store is down.
    """
    return get_governor().monthly_used(app_key=department_app_key(department))


def monthly_calls_left(department: Department) -> int:
    return max(0, monthly_quota(department) - monthly_calls_used(department))


def _start_of_today() -> datetime:
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def org_wide_sends_today(department: Department) -> int:
    start = _start_of_today()
    return Batch.objects.filter(
        dispatch__plan__department=department, to_all=True, created_at__gte=start
    ).count()


def daily_cap_reachable(department_id: int) -> bool:
    """Whether anyone can have reached the per-person daily cap with this department's app.

    Each of today's notices reaches a person at most once (twice for a file or voice notice
    and its companion card) plus its reminders, so when their sum is under the cap nobody can
    be over it and the per-person count is skipped (on a million-person snapshot that count
    is most of the planner's time).
    """
    cap = int(settings.DELIVERY_LIMITS["per_person_daily"])
    start = _start_of_today()
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
    start = _start_of_today()
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
