"""What would stop a department's notice from going out, told before anyone approves it.

The pre-flight panel (notices.preflight) shows these beside its call and quota figures:

- the department's DingTalk app: not configured, its secret unreadable, or its key and secret
  refused by gettoken (a wrong secret, or an app that was deleted or stopped);
- notices of the department paused now, with the reason the engine recorded (a revoked API
  permission, an IP whitelist, the month's quota, a governor that is down);
- people of the audience who already had the day's share of this app's notices (DingTalk
  drops the rest silently; the engine records them as not sent instead).

Only gettoken is called, and only when no token is cached: it is exempt from the monthly
quota. A failed check is remembered for a minute, so a page typing its preview does not call
DingTalk on every keystroke. No transaction is open during the call.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet
from django.utils.translation import gettext

from accounts.channel import client_for_department
from accounts.models import Department
from audiences.models import Recipient
from common.errors import ApplicationError
from delivery.models import DeliveryPlan, PlanStatus
from delivery.quota import daily_cap_reachable, over_daily_cap
from dingtalk.errors import DingTalkError, InvalidCredentials

CHECK_CACHE_SECONDS = 60


def send_problems(
    department: Department, *, audience: QuerySet[Recipient] | None = None
) -> list[str]:
    """Plain sentences, safe to show, on what would stop or shorten this department's send."""
    problems = channel_problems(department)
    problems += paused_notices(department)
    if audience is not None:
        problems += daily_cap_problems(department, audience)
    return problems


def _check_key(department: Department) -> str:
    parts = "|".join(
        [
            str(department.pk),
            department.dingtalk_app_key,
            department.dingtalk_secret_ref,
            str(department.dingtalk_agent_id),
            str(settings.DINGTALK_BASE_URL),
        ]
    )
    return "delivery:channel-check:" + hashlib.sha256(parts.encode()).hexdigest()


def channel_problems(department: Department) -> list[str]:
    """Whether the department's app can get a DingTalk token (the cached one counts)."""
    key = _check_key(department)
    remembered = cache.get(key)
    if isinstance(remembered, str):
        return [remembered]
    try:
        client_for_department(department).get_access_token()
    except ApplicationError as exc:
        problem = gettext("DingTalk app: %(problem)s") % {"problem": exc.message}
    except InvalidCredentials:
        problem = gettext(
            "DingTalk refused this department's app key or secret (a wrong secret, or an app "
            "that was stopped or deleted). Nothing can be sent until the department admin "
            "fixes the credentials."
        )
    except DingTalkError as exc:
        problem = gettext(
            "DingTalk could not be reached to check this department's app (%(error)s). The "
            "notice will wait and go out when DingTalk answers."
        ) % {"error": str(exc)}
    else:
        return []
    cache.set(key, problem, CHECK_CACHE_SECONDS)
    return [problem]


def paused_notices(department: Department) -> list[str]:
    """The department's notices paused now, each with the reason the engine recorded."""
    paused = (
        DeliveryPlan.objects.filter(department=department, status=PlanStatus.PAUSED)
        .select_related("notice")
        .order_by("-pk")
    )
    return [
        gettext("Sending is paused for “%(title)s”: %(reason)s")
        % {
            "title": plan.notice.title_en or plan.notice.title_zh,
            "reason": plan.pause_reason_text(),
        }
        for plan in paused[:3]
    ]


def daily_cap_problems(department: Department, audience: QuerySet[Recipient]) -> list[str]:
    """People of the audience at the day's per-person cap of this app, if anyone can be."""
    if not daily_cap_reachable(department.pk):
        return []
    capped = audience.filter(dingtalk_user_id__in=over_daily_cap(department.pk)).count()
    if not capped:
        return []
    cap = int(settings.DELIVERY_LIMITS["per_person_daily"])
    return [
        gettext(
            "%(count)s people of this audience have already had today's %(cap)s notices from "
            "this app: DingTalk would drop theirs, so they will be recorded as not sent."
        )
        % {"count": f"{capped:,}", "cap": cap}
    ]
