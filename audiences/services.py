"""Writes for audiences: segments, erasure, recipient edits and department-owned settings.

Each service authorises (manage_audience in the owning department), validates, writes and
audits in one transaction. actor=None means the system (tasks, commands).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import permissions as perms
from accounts.models import Department
from audiences.audit_actions import AudienceAuditAction
from audiences.changes import audience_changing, segments_using
from audiences.models import (
    CheckIn,
    DirectorySettings,
    District,
    DistrictMapping,
    Language,
    Recipient,
    RecipientTag,
    RiskLevel,
    Segment,
    SegmentChannel,
    SegmentKind,
    SegmentMember,
    SubscriptionFilter,
    SubscriptionSource,
    SubscriptionState,
    Tag,
    Venue,
)
from audiences.validation import normalise_hk_mobile
from audit.services import audit_record
from common.errors import ApplicationError
from common.types import Actor
from delivery.privacy import anonymise_recipient_deliveries


def require_manage(actor: Actor, department: Department) -> None:
    """Permission manage_audience in `department`; actor=None is the system (tasks, commands)."""
    if actor is not None:
        perms.require_department_perm(actor, perms.MANAGE_AUDIENCE, department)


# --- segments ------------------------------------------------------------------------------


@dataclass
class SegmentInput:
    name: str
    description: str = ""
    kind: str = SegmentKind.FILTER
    subscription: str = SubscriptionFilter.SUBSCRIBED
    channel: str = SegmentChannel.MEMBERS
    districts: Sequence[District] = ()
    function_tags: Sequence[str] = ()
    risk_levels: Sequence[str] = ()
    tags: Sequence[Tag] = ()
    member_user_ids: Sequence[str] = ()
    venue_rule: bool = False
    venues: Sequence[Venue] = ()
    centre_latitude: float | None = None
    centre_longitude: float | None = None
    radius_m: int | None = None
    checked_in_from: datetime | None = None
    checked_in_to: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _segment_snapshot(segment: Segment) -> dict[str, Any]:
    return {
        "name": segment.name,
        "kind": segment.kind,
        "subscription": segment.subscription,
        "channel": segment.channel,
        "districts": sorted(d.code for d in segment.districts.all()),
        "function_tags": sorted(segment.function_tags or []),
        "risk_levels": sorted(segment.risk_levels or []),
        "tags": sorted(t.name for t in segment.tags.all()),
        "members": SegmentMember.objects.filter(segment=segment).count(),
        "venue_rule": segment.venue_rule,
        "venues": sorted(v.code for v in segment.venues.all()),
        "centre": [segment.centre_latitude, segment.centre_longitude],
        "radius_m": segment.radius_m,
        "from": segment.checked_in_from.isoformat() if segment.checked_in_from else None,
        "to": segment.checked_in_to.isoformat() if segment.checked_in_to else None,
    }


def _check_segment_input(department: Department, data: SegmentInput) -> list[int]:
    if not data.name.strip():
        raise ApplicationError(_("Give the segment a name."), field="name")
    for objs, label in ((data.tags, "tags"), (data.venues, "venues")):
        if any(o.department_id != department.pk for o in objs):
            raise ApplicationError(
                _("Only this department's %(what)s can be used.") % {"what": label}, field=label
            )
    bad_risk = set(data.risk_levels) - set(RiskLevel.values)
    if bad_risk:
        raise ApplicationError(_("Unknown risk level."), field="risk_levels")
    if data.kind == SegmentKind.FILTER and data.venue_rule:
        has_point = (
            data.centre_latitude is not None and data.centre_longitude is not None and data.radius_m
        )
        if not data.venues and not has_point:
            raise ApplicationError(
                _("A venue rule needs venues, or a centre point and a radius."), field="venues"
            )
        if (data.centre_latitude is None) != (data.centre_longitude is None):
            raise ApplicationError(
                _("Give both latitude and longitude of the centre."), field="centre_latitude"
            )
        if (
            data.checked_in_from
            and data.checked_in_to
            and data.checked_in_from > data.checked_in_to
        ):
            raise ApplicationError(
                _("The start time is after the end time."), field="checked_in_to"
            )
    member_ids: list[int] = []
    if data.kind == SegmentKind.LIST:
        wanted = list(dict.fromkeys(u.strip() for u in data.member_user_ids if u.strip()))
        found = dict(
            Recipient.objects.filter(
                department=department, dingtalk_user_id__in=wanted, erased_at__isnull=True
            ).values_list("dingtalk_user_id", "pk")
        )
        missing = [u for u in wanted if u not in found]
        if missing:
            raise ApplicationError(
                _("No recipient with these DingTalk user ids: %(ids)s")
                % {"ids": ", ".join(missing[:20])},
                field="members",
            )
        member_ids = [found[u] for u in wanted]
    return member_ids


def _apply_segment(segment: Segment, data: SegmentInput, member_ids: list[int]) -> None:
    segment.name = data.name.strip()
    segment.description = data.description.strip()
    segment.kind = data.kind
    segment.subscription = data.subscription
    segment.channel = data.channel
    segment.function_tags = sorted(set(data.function_tags))
    segment.risk_levels = sorted(set(data.risk_levels))
    segment.venue_rule = data.venue_rule and data.kind == SegmentKind.FILTER
    segment.centre_latitude = data.centre_latitude
    segment.centre_longitude = data.centre_longitude
    segment.radius_m = data.radius_m
    segment.checked_in_from = data.checked_in_from
    segment.checked_in_to = data.checked_in_to
    segment.full_clean(exclude=["department", "created_by"])
    segment.save()
    segment.districts.set(data.districts)
    segment.tags.set(data.tags)
    segment.venues.set(data.venues)
    SegmentMember.objects.filter(segment=segment).exclude(recipient_id__in=member_ids).delete()
    SegmentMember.objects.bulk_create(
        [SegmentMember(segment=segment, recipient_id=rid) for rid in member_ids],
        ignore_conflicts=True,
    )


@transaction.atomic
def segment_create(*, actor: Actor, department: Department, data: SegmentInput) -> Segment:
    """Save a new segment. Permission: manage_audience. Audit: audiences.segment_created."""
    require_manage(actor, department)
    member_ids = _check_segment_input(department, data)
    if Segment.objects.filter(department=department, name=data.name.strip()).exists():
        raise ApplicationError(_("A segment with this name already exists."), field="name")
    segment = Segment(department=department, created_by=actor if isinstance(actor, User) else None)
    _apply_segment(segment, data, member_ids)
    audit_record(
        actor=actor,
        action=AudienceAuditAction.SEGMENT_CREATED,
        target=segment,
        data={"after": _segment_snapshot(segment)},
    )
    return segment


@transaction.atomic
def segment_update(*, actor: Actor, segment: Segment, data: SegmentInput) -> Segment:
    """Change a segment. Permission: manage_audience. Audit: audiences.segment_changed (before/after)."""
    require_manage(actor, segment.department)
    member_ids = _check_segment_input(segment.department, data)
    locked = Segment.objects.select_for_update(no_key=True).get(pk=segment.pk)
    if (
        Segment.objects.filter(department=locked.department, name=data.name.strip())
        .exclude(pk=locked.pk)
        .exists()
    ):
        raise ApplicationError(_("A segment with this name already exists."), field="name")
    before = _segment_snapshot(locked)
    done = audience_changing({locked.pk})
    _apply_segment(locked, data, member_ids)
    done({"model": "segment", "id": locked.pk, "change": "changed"})
    after = _segment_snapshot(locked)
    if before != after:
        audit_record(
            actor=actor,
            action=AudienceAuditAction.SEGMENT_CHANGED,
            target=locked,
            data={"before": before, "after": after},
        )
    return locked


@transaction.atomic
def segment_delete(*, actor: Actor, segment: Segment) -> None:
    """Delete a segment. Permission: manage_audience. Audit: audiences.segment_deleted (before the delete)."""
    require_manage(actor, segment.department)
    audit_record(
        actor=actor,
        action=AudienceAuditAction.SEGMENT_DELETED,
        target=segment,
        data={"before": _segment_snapshot(segment)},
    )
    done = audience_changing({segment.pk})
    segment_id = segment.pk
    segment.delete()
    done({"model": "segment", "id": segment_id, "change": "deleted"})


# --- recipients ----------------------------------------------------------------------------

RECIPIENT_EDITABLE_FIELDS = (
    "name",
    "mobile",
    "language",
    "district",
    "function_tag",
    "risk_level",
    "subscription_state",
)


@transaction.atomic
def recipient_update(*, actor: Actor, recipient: Recipient, changes: dict[str, Any]) -> Recipient:
    """Edit one recipient by hand. Permission: manage_audience. Audit: audiences.recipient_changed."""
    require_manage(actor, recipient.department)
    unknown = set(changes) - set(RECIPIENT_EDITABLE_FIELDS)
    if unknown:
        raise ApplicationError(
            _("These fields cannot be changed here: %(f)s") % {"f": ", ".join(sorted(unknown))}
        )
    locked = Recipient.objects.select_for_update(no_key=True).get(pk=recipient.pk)
    if locked.erased_at is not None:
        raise ApplicationError(_("This recipient's data was erased; import them again instead."))
    if "mobile" in changes:
        normalised = normalise_hk_mobile(str(changes["mobile"] or ""))
        if normalised is None:
            raise ApplicationError(_("Enter a Hong Kong mobile number."), field="mobile")
        changes["mobile"] = normalised
    before = {k: str(getattr(locked, k)) for k in changes}
    for name, value in changes.items():
        setattr(locked, name, value)
    if (
        "subscription_state" in changes
        and before["subscription_state"] != locked.subscription_state
    ):
        locked.subscription_changed_at = timezone.now()
    locked.full_clean()
    locked.save()
    after = {k: str(getattr(locked, k)) for k in changes}
    if before != after:
        # The trail records that a name or number changed, never the value: it cannot be
        # rewritten when the person's data is erased later (so no name in the label either).
        mask = {"name", "mobile"}
        audit_record(
            actor=actor,
            action=AudienceAuditAction.RECIPIENT_CHANGED,
            target=locked,
            target_label=f"recipient #{locked.pk}",
            data={
                "before": {
                    k: ("…" if k in mask else v) for k, v in before.items() if v != after[k]
                },
                "after": {k: ("…" if k in mask else v) for k, v in after.items() if v != before[k]},
            },
        )
    return locked


@transaction.atomic
def recipient_erase(*, actor: Actor, recipient: Recipient, reason: str = "") -> Recipient:
    """Erase a person's personal data on request (PDPO DPP2(2), s.26).

    Permission: manage_audience. The row stays, blanked and unsubscribed, so delivery history
    that points at it remains countable but no longer identifies anyone. Check-ins, tags and list
    memberships are deleted; the person's deliveries lose their user id, location and outreach
    notes (delivery.privacy). Audit: audiences.erased, with counts and no personal data.
    """
    require_manage(actor, recipient.department)
    locked = Recipient.objects.select_for_update().get(pk=recipient.pk)
    if locked.erased_at is not None:
        return locked
    now = timezone.now()
    deliveries = anonymise_recipient_deliveries(
        recipient_id=locked.pk,
        department_id=locked.department_id,
        dingtalk_user_id=locked.dingtalk_user_id,
    )
    CheckIn.objects.filter(recipient=locked).delete()
    RecipientTag.objects.filter(recipient=locked).delete()
    done = audience_changing(segments_using(locked))
    SegmentMember.objects.filter(recipient=locked).delete()
    done({"model": "recipient", "id": locked.pk, "change": "erased from static lists"})
    locked.dingtalk_user_id = f"erased-{uuid.uuid4().hex}"
    locked.name = ""
    locked.mobile = ""
    locked.district = None
    locked.function_tag = ""
    locked.risk_level = ""
    locked.language = Language.BOTH
    locked.dingtalk_dept_ids = []
    locked.subscription_state = SubscriptionState.UNSUBSCRIBED
    locked.subscription_source = SubscriptionSource.ERASURE
    locked.subscription_changed_at = now
    locked.erased_at = now
    locked.save()
    audit_record(
        actor=actor,
        action=AudienceAuditAction.ERASED,
        target=locked,
        target_label=f"recipient #{locked.pk}",
        data={
            "reason": reason[:200],
            "deliveries_anonymised": deliveries.deliveries,
            "batches_rewritten": deliveries.batches,
            "deliveries_not_sent": deliveries.not_sent,
        },
    )
    return locked


# --- department-owned settings (tags, venues, mappings, directory settings) ----------------

OWNED_MODELS: tuple[type[models.Model], ...] = (Tag, Venue, DistrictMapping, DirectorySettings)


@transaction.atomic
def owned_save(*, actor: Actor, obj: models.Model, changed: Sequence[str] = ()) -> models.Model:
    """Save a tag, venue, district mapping or directory settings row of a department.

    Permission: manage_audience in the object's department (and, on a change, its old one).
    Audit: audiences.settings_changed; for a tag whose high-risk flag changed (a new tag
    flagged included) audiences.tag_risk_changed too. Waiting notices whose segments name the
    object are returned for approval by notices.signals in the same transaction.
    """
    if not isinstance(obj, OWNED_MODELS):
        raise TypeError(f"{type(obj).__name__} is not a department-owned audience setting.")
    department: Department = obj.department  # type: ignore[attr-defined]
    require_manage(actor, department)
    was_high_risk = False
    if obj.pk is not None:
        old = (
            type(obj)
            ._default_manager.filter(pk=obj.pk)
            .values_list("department_id", flat=True)
            .first()
        )
        if old is not None and old != department.pk:
            raise PermissionDenied("An audience setting cannot move between departments.")
        if isinstance(obj, Tag):
            was_high_risk = Tag.objects.filter(pk=obj.pk, high_risk=True).exists()
    obj.full_clean()
    done = audience_changing(segments_using(obj))
    obj.save()
    done({"model": obj._meta.model_name, "id": obj.pk, "change": "saved"})
    if isinstance(obj, Tag) and obj.high_risk != was_high_risk:
        audit_record(
            actor=actor,
            action=AudienceAuditAction.TAG_RISK_CHANGED,
            target=obj,
            department=department,
            data={"tag": obj.name, "before": was_high_risk, "after": obj.high_risk},
        )
    audit_record(
        actor=actor,
        action=AudienceAuditAction.SETTINGS_CHANGED,
        target=obj,
        department=department,
        data={"model": obj._meta.model_name, "changed": sorted(changed)},
    )
    return obj


@transaction.atomic
def owned_delete(*, actor: Actor, obj: models.Model) -> None:
    if not isinstance(obj, OWNED_MODELS):
        raise TypeError(f"{type(obj).__name__} is not a department-owned audience setting.")
    department: Department = obj.department  # type: ignore[attr-defined]
    require_manage(actor, department)
    audit_record(
        actor=actor,
        action=AudienceAuditAction.SETTINGS_CHANGED,
        target=obj,
        department=department,
        data={"model": obj._meta.model_name, "deleted": True},
    )
    done = audience_changing(segments_using(obj))
    obj_id = obj.pk
    obj.delete()
    done({"model": obj._meta.model_name, "id": obj_id, "change": "deleted"})
