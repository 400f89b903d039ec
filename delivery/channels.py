"""Which DingTalk channel reaches whom, and why: the choice per notice, told before approval
and reported after the send.

- **Work notifications** reach members of the department's DingTalk organisation. They report
  who read the notice and carry confirmations and reminders: targeted and closed-loop notices,
  and the members of any audience, go this way (delivery's batches and receipts).
- **The Service Window** (互动服务窗) reaches citizens who follow the department's official
  account. A citywide broadcast reaches all followers in one call (``is_to_all``); a segment's
  followers go by lists of 1,000. It reports only whether each send went out (the send
  records), never who read it, and carries no voice, file or confirmation message
  (delivery.services.service_window).

An audience of both is split: members by work notification, followers by the Service Window.
The planner calls :func:`start_service_window`; the pre-flight shows :func:`preflight_channels`;
the dashboard and the receipt report show :func:`channel_figures`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.cache import cache
from django.db.models import Count, QuerySet, Sum
from django.utils.translation import gettext as _

from accounts.models import Department
from audiences.models import Recipient, RecipientChannel, Segment, SubscriptionState
from audiences.selectors import segments_recipients
from delivery import enqueue
from delivery.models import BatchStatus, DeliveryPlan, ServiceWindowBatch
from delivery.services.service_window import service_account_id, sw_plan_batches
from dingtalk import service_window as sw
from notices.models import COMPANION_KINDS, Notice, Tier

WORK = "work_notification"
SERVICE_WINDOW = "service_window"
CACHE_SECONDS = 300


@dataclass(frozen=True)
class ChannelSplit:
    """An audience split by channel, with what the pre-flight says about each."""

    members: int
    followers: int
    service_window: bool  # the department has a Service Window account
    lines: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def start_service_window(plan: DeliveryPlan, notice: Notice) -> int:
    """Create the plan's Service Window batches (once) and queue those still queued."""
    queued = sw_plan_batches(plan, notice)
    enqueue.send_service_window(queued, urgent=plan.urgent)
    return len(queued)


def _audience(department: Department, tier: str, segments: list[Segment]) -> QuerySet[Recipient]:
    if tier == Tier.CITYWIDE:
        return Recipient.objects.filter(
            department=department,
            subscription_state=SubscriptionState.SUBSCRIBED,
            erased_at__isnull=True,
        )
    if not segments:
        return Recipient.objects.none()
    return segments_recipients(segments)


def channel_counts(
    department: Department, tier: str, segments: Iterable[Segment]
) -> tuple[int, int]:
    """(members, followers) of an audience, from a five-minute cache like the reach count."""
    segment_list = list(segments)
    parts = [
        str(department.pk),
        tier,
        *(f"{s.pk}:{s.updated_at.isoformat()}" for s in segment_list),
    ]
    key = "delivery:channels:" + hashlib.sha256("|".join(parts).encode()).hexdigest()
    hit = cache.get(key)
    if isinstance(hit, tuple) and len(hit) == 2:
        return int(hit[0]), int(hit[1])
    rows = dict(
        _audience(department, tier, segment_list)
        .order_by()
        .values_list("channel")
        .annotate(n=Count("pk"))
        .values_list("channel", "n")
    )
    counts = (
        int(rows.get(RecipientChannel.MEMBER, 0)),
        int(rows.get(RecipientChannel.FOLLOWER, 0)),
    )
    cache.set(key, counts, CACHE_SECONDS)
    return counts


def preflight_channels(
    department: Department,
    tier: str,
    segments: Iterable[Segment],
    *,
    requires_confirmation: bool,
    kind: str,
) -> ChannelSplit:
    """The split and, for each channel, why it is used and what it cannot do."""
    members, followers = channel_counts(department, tier, segments)
    configured = bool(service_account_id(department.pk))
    lines: list[str] = []
    if members:
        lines.append(
            _(
                "Work notifications to %(n)s organisation members: DingTalk reports who read "
                "it; confirmations and reminders are tracked."
            )
            % {"n": f"{members:,}"}
        )
    if followers and not configured:
        lines.append(
            _(
                "%(n)s Service Window followers will not be reached: the department has no "
                "Service Window account set in its directory settings."
            )
            % {"n": f"{followers:,}"}
        )
    elif followers:
        if tier == Tier.CITYWIDE:
            lines.append(
                _(
                    "Service Window broadcast to all %(n)s followers in one call: DingTalk "
                    "reports whether it went out, not who read it."
                )
                % {"n": f"{followers:,}"}
            )
        else:
            calls = -(-followers // sw.MAX_LIST)
            lines.append(
                _(
                    "Service Window to %(n)s followers in %(calls)s calls of up to 1,000: "
                    "DingTalk reports whether it went out, not who read it."
                )
                % {"n": f"{followers:,}", "calls": calls}
            )
        if requires_confirmation:
            lines.append(
                _(
                    "Followers cannot confirm: the Service Window has no confirmation button, "
                    "so only members' confirmations are counted."
                )
            )
        if kind in COMPANION_KINDS:
            lines.append(
                _(
                    "The Service Window carries no voice or file message: followers get the "
                    "text only."
                )
            )
        if followers > sw.MAX_PEOPLE and tier == Tier.CITYWIDE:
            lines.append(
                _("DingTalk does not run a Service Window broadcast to more than 100,000 people.")
            )
    return ChannelSplit(members, followers, configured, lines)


def channel_figures(plan: DeliveryPlan | None) -> dict[str, Any]:
    """The dashboard's and receipt report's figures per channel (one small query)."""
    if plan is None:
        return {"service_window": None}
    rows = ServiceWindowBatch.objects.filter(plan=plan)
    by_status = dict(
        rows.order_by().values_list("status").annotate(n=Sum("size")).values_list("status", "n")
    )
    if not by_status:
        return {"service_window": None}
    recalled = rows.filter(recalled_at__isnull=False).aggregate(n=Sum("size"))["n"] or 0
    return {
        "service_window": {
            "calls": rows.count(),
            "sent": int(by_status.get(BatchStatus.ACCEPTED, 0) or 0),
            "queued": int(
                (by_status.get(BatchStatus.QUEUED, 0) or 0)
                + (by_status.get(BatchStatus.CLAIMED, 0) or 0)
                + (by_status.get(BatchStatus.UNKNOWN, 0) or 0)
            ),
            "failed": int(by_status.get(BatchStatus.FAILED, 0) or 0),
            "recalled": int(recalled),
            "can_report": _("whether each send went out; recall within 24 hours"),
            "cannot_report": _("who read it, confirmations, voice or file messages"),
        },
        "work_notification": {
            "can_report": _("delivered, read and unread per person; confirmations; reminders"),
        },
    }
