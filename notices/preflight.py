"""Pre-flight figures for the compose page: reach, DingTalk calls, quota, finish time, SMS saving.

The send arithmetic is the delivery engine's (`delivery.planning.estimate`, pure functions on
dingtalk-api.md §2 and §9), so what staff are shown is what the dispatcher will do: 100 ids per
call for per-person tracking, one to_all_user call per message for an untracked citywide
broadcast, a second call beside each for a file or voice notice's text, 5,000 recipients a
minute, SMS at HK$0.25 against at most HK$0.03 per push.

Counting a million recipients takes longer than a preview may, so counts are cached briefly
and the panel says when the figure was counted.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet

from accounts.models import Department, Edition
from audiences.models import Recipient, Segment, SubscriptionState
from audiences.selectors import segments_recipients
from delivery import planning, readiness
from delivery.governor import GovernorUnavailable
from delivery.quota import monthly_calls_used, org_wide_sends_today
from notices.models import COMPANION_KINDS, MEDIA_KINDS, MessageKind, Tier

MONTHLY_CALLS: dict[str, int] = {Edition.STANDARD: 5_000, Edition.PROFESSIONAL: 200_000}
IDS_PER_CALL = 100
COUNT_CACHE_SECONDS = 300


def audience_queryset(
    department: Department, tier: str, segments: Iterable[Segment]
) -> QuerySet[Recipient]:
    """Everyone a notice would reach: every subscriber for citywide, else the union of segments."""
    if tier == Tier.CITYWIDE:
        return Recipient.objects.filter(
            department=department,
            subscription_state=SubscriptionState.SUBSCRIBED,
            erased_at__isnull=True,
        )
    return segments_recipients(list(segments))


@dataclass(frozen=True)
class AudienceCount:
    count: int
    counted_at: float
    cached: bool
    # Citywide only: nobody in the department opted out, so one to_all_user send can reach all.
    everyone_subscribed: bool = False

    @property
    def age_s(self) -> int:
        return max(0, int(time.time() - self.counted_at))


def _count_key(department: Department, tier: str, segments: list[Segment]) -> str:
    parts = [str(department.pk), tier if tier == Tier.CITYWIDE else "segments"]
    if tier != Tier.CITYWIDE:
        parts += [
            f"{s.pk}:{s.updated_at.isoformat()}" for s in sorted(segments, key=lambda s: s.pk)
        ]
    return "notices:reach:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def audience_count(
    department: Department, tier: str, segments: Iterable[Segment], *, fresh: bool = False
) -> AudienceCount:
    """The number of recipients; from a cache of up to five minutes unless `fresh`."""
    segment_list = list(segments)
    if tier != Tier.CITYWIDE and not segment_list:
        return AudienceCount(0, time.time(), cached=False)
    key = _count_key(department, tier, segment_list)
    if not fresh:
        hit = cache.get(key)
        if isinstance(hit, tuple) and len(hit) == 3:
            return AudienceCount(int(hit[0]), float(hit[1]), True, bool(hit[2]))
    count = audience_queryset(department, tier, segment_list).count()
    everyone = False
    if tier == Tier.CITYWIDE:
        # The same test delivery applies before it chooses an organisation-wide send.
        everyone = (
            not Recipient.objects.filter(department=department)
            .exclude(subscription_state=SubscriptionState.SUBSCRIBED, erased_at__isnull=True)
            .exists()
        )
    now = time.time()
    cache.set(key, (count, now, everyone), COUNT_CACHE_SECONDS)
    return AudienceCount(count, now, cached=False, everyone_subscribed=everyone)


def calls_used_this_month(department: Department) -> int | None:
    """Metered calls the department's app used this month (delivery's governor counts them).

    None when the count is unavailable (the governor's store is down).
    """
    try:
        return monthly_calls_used(department)
    except GovernorUnavailable:
        return None


def send_problems(department: Department, audience: QuerySet[Recipient]) -> list[str]:
    """What would stop the send (delivery.readiness): app credentials, paused notices, caps."""
    return list(readiness.send_problems(department, audience=audience))


def preflight(
    *,
    department: Department,
    tier: str,
    segments: Iterable[Segment],
    languages: int,
    requires_confirmation: bool,
    kind: str = MessageKind.TEXT,
    fresh: bool = False,
) -> dict[str, Any]:
    """The figures of the pre-flight panel, JSON-ready."""
    segment_list = list(segments)
    reach = audience_count(department, tier, segment_list, fresh=fresh)
    monthly = MONTHLY_CALLS.get(department.dingtalk_edition, MONTHLY_CALLS[Edition.STANDARD])
    used = calls_used_this_month(department)
    calls_left = None if used is None else max(0, monthly - used)
    # The same choices delivery.services makes when it plans the send.
    tracked = tier != Tier.CITYWIDE
    org_wide = tier == Tier.CITYWIDE and not requires_confirmation and reach.everyone_subscribed
    # A file or voice notice's text goes in a companion card beside the media: two calls per
    # batch, and two of the day's three organisation-wide sends (as choose_plan_strategy counts).
    companion = kind in COMPANION_KINDS
    figures = planning.estimate(
        tier=tier,
        recipients=reach.count,
        languages=max(1, languages),
        tracked=tracked,
        org_wide_possible=org_wide,
        personal_links=requires_confirmation,
        org_wide_used_today=(org_wide_sends_today(department) + int(companion)) if org_wide else 0,
        calls_left=calls_left,
        companion=companion,
        media_uploads=1 if kind in MEDIA_KINDS else 0,
    )
    eta_s = figures.eta_s
    return {
        "recipients": reach.count,
        "recipients_cached": reach.cached,
        "recipients_age_s": reach.age_s,
        "strategy": figures.strategy,
        "strategy_label": planning.strategy_label(figures.strategy),
        "calls": figures.send_calls,
        "calls_total": figures.calls,
        "monthly_calls": monthly,
        "calls_used": used,
        "calls_left": calls_left,
        "eta_s": eta_s,
        "eta_minutes": math.ceil(eta_s / 60) if eta_s else 0,
        "sms_cost_hkd": figures.sms_cost_hkd,
        "push_cost_hkd": figures.push_cost_hkd,
        "sms_saving_hkd": figures.sms_saving_hkd,
        "warnings": [
            *send_problems(department, audience_queryset(department, tier, segment_list)),
            *figures.warnings,
        ],
        "source": "delivery.planning",
        "two_approvers_above": int(settings.NOTICES_TWO_APPROVER_AUDIENCE),
    }
