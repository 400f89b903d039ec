"""DingTalk directory → recipients: the full sync (a Celery task) and single-user events (the callback).

Network calls happen first, outside any transaction; the database is then changed in one short
transaction per sync (or per event), with its audit event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from accounts.models import Department
from accounts.secrets import resolve_secret_ref
from audiences import enqueue
from audiences.audit_actions import AudienceAuditAction
from audiences.directory import (
    DirectoryPerson,
    DirectorySnapshot,
    Pacer,
    directory_client,
    person_from_user,
    walk_directory,
)
from audiences.membercount import count_members, member_counts_store
from audiences.models import (
    DirectorySettings,
    DirectorySync,
    DistrictMapping,
    Recipient,
    RecipientChannel,
    SubscriptionSource,
    SubscriptionState,
    SyncState,
)
from audiences.services import require_manage
from audit.services import audit_record
from common.errors import ApplicationError
from common.types import Actor
from dingtalk.client import DingTalkClient
from dingtalk.crypto import CallbackCrypto

T = TypeVar("T")


def _district_for(
    department: Department, parents: dict[int, int]
) -> Callable[[list[int]], int | None]:
    mapping = dict(
        DistrictMapping.objects.filter(department=department).values_list(
            "dingtalk_dept_id", "district_id"
        )
    )

    def lookup(dept_ids: list[int]) -> int | None:
        # The nearest mapped department up the tree wins, so mapping "Sham Shui Po office" covers its teams.
        for dept_id in dept_ids:
            current: int | None = dept_id
            while current is not None:
                if current in mapping:
                    return mapping[current]
                current = parents.get(current)
        return None

    return lookup


def _chunks(items: list[T], size: int = 1000) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@transaction.atomic
def directory_sync_request(*, actor: Actor, department: Department) -> DirectorySync:
    """Queue a directory walk. Permission: manage_audience. Audit: audiences.sync_requested."""
    require_manage(actor, department)
    sync = DirectorySync.objects.create(
        department=department, requested_by=actor if isinstance(actor, User) else None
    )
    audit_record(
        actor=actor, action=AudienceAuditAction.SYNC_REQUESTED, target=sync, department=department
    )
    transaction.on_commit(lambda: enqueue.directory_sync(sync.pk))
    return sync


def directory_sync_run(
    *, sync_id: int, client: DingTalkClient | None = None
) -> DirectorySync | None:
    """Walk the directory and apply it. Claims PENDING -> RUNNING, so a second delivery does nothing."""
    if (
        DirectorySync.objects.filter(pk=sync_id, state=SyncState.PENDING).update(
            state=SyncState.RUNNING, started_at=timezone.now()
        )
        != 1
    ):
        return None
    sync = DirectorySync.objects.select_related("department").get(pk=sync_id)
    department = sync.department
    root = (
        DirectorySettings.objects.filter(department=department)
        .values_list("root_dept_id", flat=True)
        .first()
        or 1
    )
    own_client = client is None
    active = client or directory_client(department)
    try:
        snapshot = walk_directory(
            active, root=root, pacer=Pacer(settings.AUDIENCES_SYNC_CALLS_PER_SECOND)
        )
    except Exception as exc:
        _sync_failed(sync, exc)
        raise
    finally:
        if own_client:
            active.close()
    counts = _apply_snapshot(sync=sync, snapshot=snapshot)
    sync.refresh_from_db()
    sync.counts = counts
    return sync


def _sync_failed(sync: DirectorySync, exc: Exception) -> None:
    with transaction.atomic():
        DirectorySync.objects.filter(pk=sync.pk).update(
            state=SyncState.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:500],
            finished_at=timezone.now(),
        )
        audit_record(
            actor=None,
            action=AudienceAuditAction.SYNC_FAILED,
            target=sync,
            department=sync.department,
            data={"error": type(exc).__name__},
        )


_SYNCED_FIELDS = [
    "name",
    "mobile",
    "district",
    "dingtalk_dept_ids",
    "subscription_state",
    "subscription_source",
    "subscription_changed_at",
    "channel",
    "updated_at",
]


@dataclass
class _SyncChanges:
    """What one walk changes: new people, changed ones, and those no longer in the directory."""

    creates: list[Recipient] = field(default_factory=list)
    updates: list[Recipient] = field(default_factory=list)
    unchanged: int = 0
    leavers: list[Recipient] = field(default_factory=list)  # were subscribed: now unsubscribed
    departed: list[Recipient] = field(default_factory=list)  # already unsubscribed: lose depts


@transaction.atomic
def _apply_snapshot(*, sync: DirectorySync, snapshot: DirectorySnapshot) -> dict[str, int]:
    department = sync.department
    now = timezone.now()
    existing = {
        r.dingtalk_user_id: r
        for r in Recipient.objects.filter(department=department, erased_at__isnull=True)
    }
    changes = _compare_people(department, snapshot, existing, now)
    # Service Window followers are not in the directory: its walk never unsubscribes them.
    absent = [
        r
        for uid, r in existing.items()
        if uid not in snapshot.people and r.channel == RecipientChannel.MEMBER
    ]
    _mark_absent(changes, absent, now)
    for chunk in _chunks(changes.creates):
        Recipient.objects.bulk_create(chunk)
    for chunk in _chunks(changes.updates + changes.leavers + changes.departed):
        Recipient.objects.bulk_update(chunk, _SYNCED_FIELDS)
    counts = {
        "people": len(snapshot.people),
        "new": len(changes.creates),
        "updated": len(changes.updates),
        "unchanged": changes.unchanged,
        "left": len(changes.leavers),
        "calls": snapshot.calls,
        "throttled": snapshot.throttled,
    }
    _record_sync_done(sync=sync, snapshot=snapshot, counts=counts, now=now)
    return counts


def _compare_people(
    department: Department,
    snapshot: DirectorySnapshot,
    existing: dict[str, Recipient],
    now: datetime,
) -> _SyncChanges:
    """Each person in the directory against their recipient row: new, changed or unchanged."""
    district_of = _district_for(department, snapshot.parents)
    changes = _SyncChanges()
    for person in snapshot.people.values():
        values = _values_for(person, district_of)
        recipient = existing.get(person.userid)
        if recipient is None:
            changes.creates.append(
                Recipient(
                    department=department,
                    dingtalk_user_id=person.userid,
                    subscription_source=SubscriptionSource.DIRECTORY,
                    subscription_changed_at=now,
                    **values,
                )
            )
        elif _merge(recipient, values, now, SubscriptionSource.DIRECTORY):
            changes.updates.append(recipient)
        else:
            changes.unchanged += 1
    return changes


def _mark_absent(changes: _SyncChanges, absent: list[Recipient], now: datetime) -> None:
    """People no longer in the directory: the subscribed ones leave, and all lose departments."""
    changes.leavers = [r for r in absent if r.subscription_state == SubscriptionState.SUBSCRIBED]
    # Out of the directory, out of its departments: a dept_id_list send no longer reaches them.
    changes.departed = [
        r
        for r in absent
        if r.subscription_state != SubscriptionState.SUBSCRIBED and r.dingtalk_dept_ids
    ]
    for r in changes.departed:
        r.dingtalk_dept_ids = []
        r.updated_at = now
    for r in changes.leavers:
        r.dingtalk_dept_ids = []
        r.subscription_state = SubscriptionState.UNSUBSCRIBED
        r.subscription_source = SubscriptionSource.DIRECTORY
        r.subscription_changed_at = now
        r.updated_at = now


def _record_sync_done(
    *, sync: DirectorySync, snapshot: DirectorySnapshot, counts: dict[str, int], now: datetime
) -> None:
    department = sync.department
    DirectorySync.objects.filter(pk=sync.pk).update(
        state=SyncState.DONE, counts=counts, finished_at=now
    )
    tree = {"root": snapshot.root, "parents": {str(k): v for k, v in snapshot.parents.items()}}
    DirectorySettings.objects.update_or_create(
        department=department, defaults={"last_synced_at": now, "dept_tree": tree}
    )
    # What an organisation- or department-wide send reaches, portal recipients or not.
    total, by_dept = count_members(
        (p.dept_ids for p in snapshot.people.values()), snapshot.parents, snapshot.root
    )
    member_counts_store(department, total, by_dept, now)
    audit_record(
        actor=None,
        action=AudienceAuditAction.SYNCED,
        target=sync,
        department=department,
        data=counts,
    )


def _values_for(
    person: DirectoryPerson, district_of: Callable[[list[int]], int | None]
) -> dict[str, Any]:
    return {
        "name": person.name,
        "mobile": person.mobile,
        "district_id": district_of(person.dept_ids),
        "dingtalk_dept_ids": sorted(person.dept_ids),
        "subscription_state": SubscriptionState.SUBSCRIBED,
        # A follower found in the directory is a member now: work notifications reach them.
        "channel": RecipientChannel.MEMBER,
    }


def _merge(
    recipient: Recipient, values: dict[str, Any], now: datetime, source: SubscriptionSource
) -> bool:
    """Apply directory values; True if anything changed. A mobile DingTalk hides stays as it was."""
    changed = False
    for name, value in values.items():
        if name == "mobile" and not value:
            continue
        if name == "district_id" and value is None:
            continue  # unmapped departments keep a district set by import or by hand
        if getattr(recipient, name) != value:
            setattr(recipient, name, value)
            changed = True
            if name == "subscription_state":
                recipient.subscription_source = source
                recipient.subscription_changed_at = now
    if changed:
        recipient.updated_at = now
    return changed


# --- events pushed to the callback --------------------------------------------------------


class DirectoryEvent(StrEnum):
    """The directory events DingTalk pushes to the callback that change recipients."""

    USER_ADD = "user_add_org"
    USER_MODIFY = "user_modify_org"
    USER_LEAVE = "user_leave_org"


def callback_crypto_for(code: str) -> CallbackCrypto | None:
    """The department's callback crypto, or None if it has no callback configured (or cannot read it)."""
    row = (
        DirectorySettings.objects.filter(department__code=code, department__is_active=True)
        .select_related("department")
        .first()
    )
    if (
        row is None
        or not row.callback_token_ref
        or not row.callback_aes_key_ref
        or not row.department.dingtalk_app_key
    ):
        return None
    try:
        token = resolve_secret_ref(row.callback_token_ref)
        aes_key = resolve_secret_ref(row.callback_aes_key_ref)
    except ApplicationError:
        return None
    return CallbackCrypto(token, aes_key, row.department.dingtalk_app_key)


def directory_event_apply(
    *, department_id: int, event_type: str, userids: list[str], client: DingTalkClient | None = None
) -> None:
    """Apply user_add_org / user_modify_org / user_leave_org. Re-applying the same event changes nothing."""
    department = Department.objects.get(pk=department_id)
    people: dict[str, DirectoryPerson] = {}
    if event_type in (DirectoryEvent.USER_ADD, DirectoryEvent.USER_MODIFY):
        own_client = client is None
        active = client or directory_client(department)
        pacer = Pacer(settings.AUDIENCES_SYNC_CALLS_PER_SECOND)
        try:
            for userid in userids:
                people[userid] = person_from_user(pacer.call(lambda u=userid: active.get_user(u)))  # type: ignore[misc]
        finally:
            if own_client:
                active.close()
    _apply_event(department=department, event_type=event_type, userids=userids, people=people)


@transaction.atomic
def _apply_event(
    *,
    department: Department,
    event_type: str,
    userids: list[str],
    people: dict[str, DirectoryPerson],
) -> None:
    now = timezone.now()
    district_of = _district_for(department, {})
    changed = 0
    for userid in userids:
        recipient = (
            Recipient.objects.select_for_update(no_key=True)
            .filter(department=department, dingtalk_user_id=userid, erased_at__isnull=True)
            .first()
        )
        if event_type == DirectoryEvent.USER_LEAVE:
            if (
                recipient is not None
                and recipient.subscription_state == SubscriptionState.SUBSCRIBED
            ):
                recipient.dingtalk_dept_ids = []
                recipient.subscription_state = SubscriptionState.UNSUBSCRIBED
                recipient.subscription_source = SubscriptionSource.EVENT
                recipient.subscription_changed_at = now
                recipient.save()
                changed += 1
            continue
        person = people.get(userid)
        if person is None:
            continue
        values = _values_for(person, district_of)
        if recipient is None:
            Recipient.objects.create(
                department=department,
                dingtalk_user_id=userid,
                subscription_source=SubscriptionSource.EVENT,
                subscription_changed_at=now,
                **values,
            )
            changed += 1
        elif _merge(recipient, values, now, SubscriptionSource.EVENT):
            recipient.save()
            changed += 1
    if changed:
        audit_record(
            actor=None,
            action=AudienceAuditAction.DIRECTORY_EVENT,
            department=department,
            target_label=event_type,
            data={"event": event_type, "users": len(userids), "changed": changed},
        )
