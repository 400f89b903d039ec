"""Service Window followers as recipients: follow and unfollow events, and their reconciliation.

A citizen who follows the department's Service Window (互动服务窗) becomes a recipient with
``channel = follower``; DingTalk pushes ``official_account_follow`` / ``official_account_unfollow``
through the department's encrypted callback (audiences.views.dingtalk_callback), which calls
:func:`follow_event_apply` at once (one row each, well inside DingTalk's 2.5 s). A follow adds or
re-subscribes the person, an unfollow unsubscribes them; source and time are kept. An event
older than the person's last change is ignored, so events applied out of order or twice change
nothing.

Reconciliation (:func:`followers_reconcile`, the ``audiences.reconcile_followers`` task, on beat
every ten minutes): DingTalk keeps the pushes it could not deliver (after its retries at 10 s and
30 s) for ``get_call_back_failed_result``; the job fetches them and applies the follow events
among them with source ``follow_sync``, so a follower missed while the portal was down is
caught up. There is no documented call listing all followers, so nothing else is compared.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Department
from audiences.audit_actions import AudienceAuditAction
from audiences.directory import directory_client
from audiences.models import (
    DirectorySettings,
    Recipient,
    RecipientChannel,
    SubscriptionSource,
    SubscriptionState,
)
from audit.services import audit_record
from dingtalk import service_window as sw

MAX_FAILED_PAGES = 50  # 200 pushes a call: 10,000 per run at most


class FollowEvent(StrEnum):
    FOLLOW = "official_account_follow"
    UNFOLLOW = "official_account_unfollow"


def event_time(raw: object) -> datetime:
    """An event's ``TimeStamp`` (epoch milliseconds) as an aware time; now if missing or bad."""
    try:
        return datetime.fromtimestamp(int(str(raw)) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return timezone.now()


@transaction.atomic
def follow_event_apply(
    *,
    department_id: int,
    event_type: str,
    userids: list[str],
    at: datetime,
    source: str = SubscriptionSource.FOLLOW_EVENT,
) -> int:
    """Apply one follow or unfollow event; returns how many people changed.

    Audit: audiences.follower_changed (only when something changed).
    """
    follow = event_type == FollowEvent.FOLLOW
    if not follow and event_type != FollowEvent.UNFOLLOW:
        raise ValueError(f"not a follow event: {event_type}")
    department = Department.objects.get(pk=department_id)
    state = SubscriptionState.SUBSCRIBED if follow else SubscriptionState.UNSUBSCRIBED
    changed = 0
    for userid in dict.fromkeys(u for u in userids if u):
        recipient = (
            Recipient.objects.select_for_update(no_key=True)
            .filter(department=department, dingtalk_user_id=userid[:64])
            .first()
        )
        if recipient is None:
            if follow:
                Recipient.objects.create(
                    department=department,
                    dingtalk_user_id=userid[:64],
                    channel=RecipientChannel.FOLLOWER,
                    subscription_state=state,
                    subscription_source=source,
                    subscription_changed_at=at,
                )
                changed += 1
            continue
        if recipient.erased_at is not None or recipient.channel != RecipientChannel.FOLLOWER:
            # An erased person stays erased; a member is reached by work notifications.
            continue
        if recipient.subscription_changed_at >= at or recipient.subscription_state == state:
            continue
        recipient.subscription_state = state
        recipient.subscription_source = source
        recipient.subscription_changed_at = at
        recipient.save(
            update_fields=[
                "subscription_state",
                "subscription_source",
                "subscription_changed_at",
                "updated_at",
            ]
        )
        changed += 1
    if changed:
        audit_record(
            actor=None,
            action=AudienceAuditAction.FOLLOWER_CHANGED,
            department=department,
            target_label=event_type,
            data={"event": event_type, "users": len(userids), "changed": changed, "source": source},
        )
    return changed


def followers_reconcile(*, department_id: int) -> dict[str, int]:
    """Fetch the pushes DingTalk failed to deliver and apply their follow events.

    Safe to run twice: DingTalk hands each failed push out once, and an event already applied
    (or older than the person's last change) changes nothing.
    """
    department = Department.objects.get(pk=department_id)
    fetched = applied = 0
    with directory_client(department) as client:
        for _ in range(MAX_FAILED_PAGES):
            page = sw.failed_pushes(client)
            for entry in page.entries:
                fetched += 1
                nested = entry.get("event")
                event: dict[str, Any] = nested if isinstance(nested, dict) else entry
                tag = str(entry.get("call_back_tag") or event.get("EventType") or "")
                if tag not in set(FollowEvent):
                    continue
                raw_ids = event.get("UserId") or []
                userids = [str(u) for u in (raw_ids if isinstance(raw_ids, list) else [raw_ids])]
                applied += follow_event_apply(
                    department_id=department_id,
                    event_type=tag,
                    userids=userids[:100],
                    at=event_time(event.get("TimeStamp") or entry.get("event_time")),
                    source=SubscriptionSource.FOLLOW_SYNC,
                )
            if not page.has_more:
                break
    return {"fetched": fetched, "changed": applied}


def departments_to_reconcile() -> list[int]:
    """Departments with a Service Window and an app to ask."""
    return list(
        DirectorySettings.objects.exclude(service_account_id="")
        .filter(department__is_active=True)
        .exclude(department__dingtalk_app_key="")
        .values_list("department_id", flat=True)
    )
