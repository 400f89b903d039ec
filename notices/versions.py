"""A notice's versions: the snapshot its hash covers, the recorded versions, who shaped each one,
and the approvals an edit voids.

An approval is bound to the version hash (everything that is sent, to whom and when: each
segment's full definition included), so any edit makes a new version and voids every approval,
and a change to a segment, tag, venue or district a waiting notice uses re-seals its hash and
voids its approvals (notices.reapproval); whoever wrote, edited or submitted a
version is recorded as its contributor and may not approve it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.utils import timezone

from audiences.models import Segment, SegmentChannel, SegmentMember, Venue
from audiences.selectors import venues_within
from common.types import Actor
from notices.guards import acting_person
from notices.models import (
    Approval,
    ContributionKind,
    Notice,
    NoticeContribution,
    NoticeVersion,
    Tier,
)


def _members_digest(segment: Segment) -> dict[str, Any]:
    """The static members as a count and a digest of their ids (the list itself may be long)."""
    ids = sorted(
        SegmentMember.objects.filter(segment=segment).values_list("recipient_id", flat=True)
    )
    digest = hashlib.sha256(",".join(map(str, ids)).encode("ascii")).hexdigest()
    return {"count": len(ids), "sha256": digest}


def _venue_definition(venue: Venue) -> dict[str, Any]:
    return {
        "id": venue.pk,
        "department": venue.department_id,
        "code": venue.code,
        "name": venue.name,
        "latitude": venue.latitude,
        "longitude": venue.longitude,
    }


def _venue_rule(segment: Segment) -> dict[str, Any] | None:
    """The venue rule with every place it names, and the places within its radius as they are now
    (moving a venue into or out of the circle changes who is reached)."""
    if not segment.venue_rule:
        return None
    centre = None
    nearby: list[dict[str, Any]] = []
    if segment.centre_latitude is not None and segment.centre_longitude is not None:
        centre = [segment.centre_latitude, segment.centre_longitude]
        if segment.radius_m:
            nearby = [
                _venue_definition(v)
                for v in venues_within(
                    department_id=segment.department_id,
                    centre=(segment.centre_latitude, segment.centre_longitude),
                    radius_m=segment.radius_m,
                ).order_by("pk")
            ]
    return {
        "venues": [_venue_definition(v) for v in segment.venues.order_by("pk")],
        "centre": centre,
        "radius_m": segment.radius_m,
        "within_radius": nearby,
        "checked_in_from": segment.checked_in_from.isoformat() if segment.checked_in_from else None,
        "checked_in_to": segment.checked_in_to.isoformat() if segment.checked_in_to else None,
    }


def segment_definition(segment: Segment) -> dict[str, Any]:
    """Everything of a segment that decides who it reaches, with the identities and names of the
    tags, districts and venues it names and their high-risk flags (see audiences.selectors.segment_q).
    The channel is named only when it is not the default (members), so the hashes of notices
    approved before channels existed do not change.
    """
    definition: dict[str, Any] = {
        "id": segment.pk,
        "name": segment.name,
        "department": segment.department_id,
        "kind": segment.kind,
        "subscription": segment.subscription,
        "districts": [
            {"id": d.pk, "code": d.code, "name_en": d.name_en, "name_zh": d.name_zh}
            for d in segment.districts.order_by("pk")
        ],
        "function_tags": sorted(segment.function_tags or []),
        "risk_levels": sorted(segment.risk_levels or []),
        "tags": [
            {"id": t.pk, "name": t.name, "high_risk": t.high_risk}
            for t in segment.tags.order_by("pk")
        ],
        "members": _members_digest(segment),
        "venue_rule": _venue_rule(segment),
    }
    if segment.channel != SegmentChannel.MEMBERS:
        definition["channel"] = segment.channel
    return definition


def _with_voice(notice: Notice, snapshot: dict[str, Any]) -> dict[str, Any]:
    """A voice-from-text notice's snapshot also names the clip's source (the clip's own hash is
    in ``attachment``); other notices' snapshots, and so their hashes, are unchanged."""
    if notice.voice_from_text:
        snapshot["voice"] = {"from_text": True, "summary": notice.voice_summary}
    return snapshot


def notice_snapshot(notice: Notice) -> dict[str, Any]:
    """Everything that is sent, to whom and when: the canonical form the version hash covers."""
    attachment = notice.attachment
    segments = sorted(notice.segments.all(), key=lambda s: s.pk) if notice.pk else []
    return _with_voice(
        notice,
        {
            "notice": notice.pk,
            "version": notice.version,
            "department": notice.department_id,
            "tier": notice.tier,
            "kind": notice.kind,
            "title_en": notice.title_en,
            "title_zh": notice.title_zh,
            "body_en": notice.body_en,
            "body_zh": notice.body_zh,
            "buttons": notice.buttons,
            "link_url": notice.link_url,
            "link_pic_url": notice.link_pic_url,
            "attachment": None
            if attachment is None
            else {
                "id": attachment.pk,
                "sha256": attachment.sha256,
                "media_type": attachment.media_type,
                "size": attachment.size,
                "duration_s": attachment.duration_s,
            },
            "audience": "citywide"
            if notice.tier == Tier.CITYWIDE
            else [segment_definition(s) for s in segments],
            "high_risk": notice.high_risk,
            "requires_confirmation": notice.requires_confirmation,
            "reminders": {
                "after_minutes": notice.remind_after_minutes,
                "max": notice.max_reminders,
                "whom": notice.remind_whom,
            },
            "send_at": notice.send_at.isoformat() if notice.send_at else None,
            "expires_at": notice.expires_at.isoformat() if notice.expires_at else None,
            "classification": notice.classification,
        },
    )


def compute_version_hash(notice: Notice) -> str:
    # The notice id and version number are inside, so a hash never recurs: an edit that
    # restores earlier content is still a new version needing new approvals.
    canonical = json.dumps(
        notice_snapshot(notice), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def record_version(notice: Notice, actor: Actor) -> None:
    """Hash the notice's current version and keep its snapshot."""
    notice.version_hash = compute_version_hash(notice)
    Notice.objects.filter(pk=notice.pk).update(version_hash=notice.version_hash)
    NoticeVersion.objects.create(
        notice=notice,
        version=notice.version,
        version_hash=notice.version_hash,
        snapshot=notice_snapshot(notice),
        created_by=acting_person(actor),
    )


def record_contribution(notice: Notice, actor: Actor, kind: str) -> None:
    """The actor wrote, edited or submitted the notice's current version (the system is no one)."""
    person = acting_person(actor)
    if person is not None:
        NoticeContribution.objects.get_or_create(
            notice=notice, version=notice.version, user=person, kind=kind
        )


def carry_contributions(
    notice: Notice,
    from_version: int,
    kinds: tuple[str, ...] = (ContributionKind.WROTE, ContributionKind.EDITED),
) -> None:
    """Whoever wrote or edited earlier versions still shaped this one: they may not approve it
    (a version made without an edit, on a return for approval, carries the submitter too)."""
    for user_id, kind in (
        NoticeContribution.objects.filter(
            notice=notice,
            version=from_version,
            kind__in=kinds,
        )
        .values_list("user_id", "kind")
        .distinct()
    ):
        NoticeContribution.objects.get_or_create(
            notice=notice, version=notice.version, user_id=user_id, kind=kind
        )


def void_approvals(notice: Notice) -> int:
    """Void every standing approval of the notice; returns how many there were."""
    return Approval.objects.filter(notice=notice, voided_at__isnull=True).update(
        voided_at=timezone.now()
    )
