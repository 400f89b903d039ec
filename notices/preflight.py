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
from django.db.models import Count, QuerySet
from django.utils.translation import gettext

from accounts.models import Department, Edition, Membership, Role
from audiences.membercount import member_counts
from audiences.models import Recipient, RecipientChannel, Segment, SubscriptionState
from audiences.selectors import segments_recipients
from delivery import forecast, planning, readiness
from delivery import reach as delivery_reach
from delivery.channels import preflight_channels
from delivery.governor import GovernorUnavailable
from delivery.quota import monthly_calls_used
from notices.models import COMPANION_KINDS, MEDIA_KINDS, MessageKind, Notice, Tier

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
            not Recipient.objects.filter(department=department, channel=RecipientChannel.MEMBER)
            .exclude(subscription_state=SubscriptionState.SUBSCRIBED, erased_at__isnull=True)
            .exists()
        )
    now = time.time()
    cache.set(key, (count, now, everyone), COUNT_CACHE_SECONDS)
    return AudienceCount(count, now, cached=False, everyone_subscribed=everyone)


def true_reach(notice: Notice, *, fresh: bool = True) -> delivery_reach.Reach:
    """What the notice's send reaches now: its strategy's reach (delivery.reach), counted fresh
    unless told otherwise. The approvers' confirmation, the two-approver rule and the send-time
    check all use this number."""
    portal = audience_count(notice.department, notice.tier, notice.segments.all(), fresh=fresh)
    return delivery_reach.notice_reach(notice, portal_recipients=portal.count)


def by_message_language(audience: QuerySet[Recipient], languages: int) -> dict[str, int]:
    """Recipients by the message they get: English readers the English one, everyone else the
    Chinese one (delivery.messages.recipient_language); one message when written in one."""
    counts = dict(audience.order_by().values_list("language").annotate(n=Count("pk")))
    total = sum(counts.values())
    if languages < 2:
        return {"only": total}
    english = int(counts.get("en", 0))
    return {"en": english, "zh": total - english}


def call_forecast(
    department: Department,
    *,
    tier: str,
    strategy: str,
    audience: QuerySet[Recipient],
    languages: int,
    dept_count: int,
    kind: str,
    reminders: int,
) -> forecast.Forecast:
    """Every metered call the notice will cause (delivery.forecast), as the engine will make them."""
    by_language = by_message_language(audience, languages)
    companion = kind in COMPANION_KINDS
    fast = delivery_reach.fast_receipts_allowed(
        department,
        tier=tier,
        strategy=strategy,
        recipients=sum(by_language.values()),
        companion=companion,
        reminders=reminders,
    )
    alerted = Membership.objects.filter(
        department=department, role=Role.SUPERVISOR, user__is_active=True
    ).exclude(dingtalk_user_id="")
    return forecast.forecast(
        strategy=strategy,
        by_language=by_language,
        dept_count=dept_count,
        companion=companion,
        media_uploads=1 if kind in MEDIA_KINDS else 0,
        reminders=reminders,
        fast_receipts=fast,
        approvers_alerted=alerted.count(),
    )


def cached_strategy(
    department: Department, tier: str, *, requires_confirmation: bool, companion: bool, fresh: bool
) -> tuple[str, Any]:
    """delivery.reach.choose_strategy, cached like the counts: for a citywide notice it reads
    the department's whole audience (opt-outs, the department layout), too slow per keystroke."""
    counted = member_counts(department)
    parts = [
        department.pk, tier, requires_confirmation, companion,
        department.broadcast_to_all_members, counted.counted_at if counted else None,
    ]  # fmt: skip
    key = "notices:strategy:" + hashlib.sha256(repr(parts).encode()).hexdigest()
    if not fresh:
        hit = cache.get(key)
        if isinstance(hit, tuple) and len(hit) == 2:
            return hit
    found = delivery_reach.choose_strategy(
        department, tier=tier, requires_confirmation=requires_confirmation, companion=companion
    )
    cache.set(key, found, COUNT_CACHE_SECONDS)
    return found


def quota_warning(total: int, left: int | None) -> list[str]:
    if left is None or total <= left:
        return []
    return [
        gettext(
            "The notice needs up to %(total)s metered calls but only %(left)s are left this month."
        )
        % {"total": f"{total:,}", "left": f"{left:,}"}
    ]


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


def month_calls(department: Department) -> tuple[int, int | None, int | None]:
    """The edition's metered calls a month, those used (None: unknown) and those left."""
    monthly = MONTHLY_CALLS.get(department.dingtalk_edition, MONTHLY_CALLS[Edition.STANDARD])
    used = calls_used_this_month(department)
    return monthly, used, None if used is None else max(0, monthly - used)


def preflight(
    *,
    department: Department,
    tier: str,
    segments: Iterable[Segment],
    languages: int,
    requires_confirmation: bool,
    kind: str = MessageKind.TEXT,
    fresh: bool = False,
    reminders: int = 0,
) -> dict[str, Any]:
    """The figures of the pre-flight panel, JSON-ready."""
    segment_list = list(segments)
    reach = audience_count(department, tier, segment_list, fresh=fresh)
    monthly, used, calls_left = month_calls(department)
    # A file or voice notice's text goes in a companion card beside the media: two calls per
    # batch, and two of the day's three organisation-wide sends.
    companion = kind in COMPANION_KINDS
    # Members by work notification, followers by the Service Window, and why.
    channels = preflight_channels(
        department, tier, segment_list, requires_confirmation=requires_confirmation, kind=kind
    )
    strategy, layout = cached_strategy(
        department, tier, requires_confirmation=requires_confirmation, companion=companion,
        fresh=fresh,
    )  # fmt: skip
    # What that send really reaches (a to_all_user or dept_id_list send: every DingTalk member
    # there); work-notification arithmetic counts the members only (followers: channels).
    reached = delivery_reach.reach_for(
        department, strategy=strategy, portal_recipients=max(0, reach.count - channels.followers),
        layout=layout,
    )  # fmt: skip
    figures = planning.estimate(
        tier=tier,
        recipients=reached.count,
        languages=max(1, languages),
        tracked=tier != Tier.CITYWIDE,
        org_wide_possible=strategy == planning.Strategy.ORG_WIDE,
        dept_count=len(layout.dept_ids) if layout is not None else 0,
        personal_links=requires_confirmation,
        companion=companion,
        media_uploads=1 if kind in MEDIA_KINDS else 0,
    )
    calls = call_forecast(
        department,
        tier=tier,
        strategy=strategy,
        audience=audience_queryset(department, tier, segment_list),
        languages=languages,
        dept_count=len(layout.dept_ids) if layout is not None else 0,
        kind=kind,
        reminders=reminders,
    )
    return {
        **reached.as_dict(),
        "recipients": reached.count,
        "recipients_cached": reach.cached,
        "recipients_age_s": reach.age_s,
        "strategy": figures.strategy,
        "strategy_label": planning.strategy_label(figures.strategy),
        "calls": figures.send_calls,
        "calls_total": calls.total,
        "forecast": calls.as_dict(),
        "monthly_calls": monthly,
        "calls_used": used,
        "calls_left": calls_left,
        "eta_s": figures.eta_s,
        "eta_minutes": math.ceil(figures.eta_s / 60) if figures.eta_s else 0,
        "sms_cost_hkd": figures.sms_cost_hkd,
        "push_cost_hkd": figures.push_cost_hkd,
        "sms_saving_hkd": figures.sms_saving_hkd,
        "warnings": [
            *send_problems(department, audience_queryset(department, tier, segment_list)),
            *figures.warnings,
            *quota_warning(calls.total, calls_left),
        ],
        "channels": channels.as_json(),
        "source": "delivery.planning",
        "two_approvers_above": int(settings.NOTICES_TWO_APPROVER_AUDIENCE),
    }
