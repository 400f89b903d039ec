"""Reads: recipients, segments and venues scoped to what the user may see; segment evaluation.

`segment_recipients`, `segments_recipients` and `segment_count` are the contract with the notices
and delivery code: each is ONE query over the recipient table (filters, static lists and the venue
rule are all expressed as predicates and EXISTS subqueries), so a union of segments never returns
a person twice and never loads a list of ids into Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, F, FloatField, OuterRef, Q, QuerySet
from django.db.models.functions import Cast
from django.http import Http404

from accounts import permissions as perms
from accounts.models import Department
from audiences.models import (
    CheckIn,
    ImportJob,
    Recipient,
    RecipientChannel,
    RecipientTag,
    Segment,
    SegmentChannel,
    SegmentKind,
    SegmentMember,
    SubscriptionFilter,
    SubscriptionState,
    Venue,
)

UserLike = AbstractBaseUser | AnonymousUser

EARTH_RADIUS_M = 6_371_000.0


@dataclass
class SegmentRule:
    """A segment's definition, saved or not (the editor counts unsaved rules as they change)."""

    department_id: int
    kind: str = SegmentKind.FILTER
    subscription: str = SubscriptionFilter.SUBSCRIBED
    channel: str = SegmentChannel.MEMBERS
    district_ids: list[int] = field(default_factory=list)
    function_tags: list[str] = field(default_factory=list)
    risk_levels: list[str] = field(default_factory=list)
    tag_ids: list[int] = field(default_factory=list)
    member_ids: list[int] | None = None  # None: read the saved members of `segment_id`
    segment_id: int | None = None
    venue_rule: bool = False
    venue_ids: list[int] = field(default_factory=list)
    centre: tuple[float, float] | None = None
    radius_m: int | None = None
    checked_in_from: datetime | None = None
    checked_in_to: datetime | None = None

    @classmethod
    def from_segment(cls, segment: Segment) -> SegmentRule:
        centre = None
        if segment.centre_latitude is not None and segment.centre_longitude is not None:
            centre = (segment.centre_latitude, segment.centre_longitude)
        return cls(
            department_id=segment.department_id,
            kind=segment.kind,
            subscription=segment.subscription,
            channel=segment.channel,
            district_ids=[d.pk for d in segment.districts.all()],
            function_tags=list(segment.function_tags or []),
            risk_levels=list(segment.risk_levels or []),
            tag_ids=[t.pk for t in segment.tags.all()],
            segment_id=segment.pk,
            venue_rule=segment.venue_rule,
            venue_ids=[v.pk for v in segment.venues.all()],
            centre=centre,
            radius_m=segment.radius_m,
            checked_in_from=segment.checked_in_from,
            checked_in_to=segment.checked_in_to,
        )


def venues_within(
    *, department_id: int, centre: tuple[float, float], radius_m: float
) -> QuerySet[Venue]:
    """Venues within radius_m of centre: a bounding box (index) refined by an equirectangular distance.

    Across Hong Kong (under 60 km) the equirectangular approximation is within a metre of the
    great-circle distance, and it needs only arithmetic, so SQLite and PostgreSQL agree.
    """
    lat, lon = centre
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    cos_lat = math.cos(math.radians(lat))
    dlon = dlat / max(cos_lat, 1e-6)
    metres_per_degree = math.radians(1) * EARTH_RADIUS_M
    dy = (F("latitude") - lat) * metres_per_degree
    dx = (F("longitude") - lon) * (metres_per_degree * cos_lat)
    return (
        Venue.objects.filter(
            department_id=department_id,
            latitude__range=(lat - dlat, lat + dlat),
            longitude__range=(lon - dlon, lon + dlon),
        )
        .alias(distance_sq=Cast(dx * dx + dy * dy, FloatField()))
        .filter(distance_sq__lte=float(radius_m) ** 2)
    )


def _venue_q(rule: SegmentRule) -> Q:
    places = Q(venue_id__in=rule.venue_ids) if rule.venue_ids else Q()
    if rule.centre is not None and rule.radius_m:
        nearby = Q(
            venue__in=venues_within(
                department_id=rule.department_id, centre=rule.centre, radius_m=rule.radius_m
            )
        )
        places = (places | nearby) if rule.venue_ids else nearby
    if not rule.venue_ids and not (rule.centre is not None and rule.radius_m):
        return Q(pk__in=[])  # a venue rule naming no place matches nobody, never everybody
    visits = CheckIn.objects.filter(
        places, recipient_id=OuterRef("pk"), venue__department_id=rule.department_id
    )
    if rule.checked_in_from is not None:
        visits = visits.filter(checked_in_at__gte=rule.checked_in_from)
    if rule.checked_in_to is not None:
        visits = visits.filter(checked_in_at__lte=rule.checked_in_to)
    return Q(Exists(visits))


def segment_q(rule: SegmentRule) -> Q:
    """The predicate over Recipient that a segment stands for (department scope included)."""
    q = Q(department_id=rule.department_id, erased_at__isnull=True)
    if rule.subscription == SubscriptionFilter.SUBSCRIBED:
        q &= Q(subscription_state=SubscriptionState.SUBSCRIBED)
    elif rule.subscription == SubscriptionFilter.UNSUBSCRIBED:
        q &= Q(subscription_state=SubscriptionState.UNSUBSCRIBED)
    if rule.channel == SegmentChannel.MEMBERS:
        q &= Q(channel=RecipientChannel.MEMBER)
    elif rule.channel == SegmentChannel.FOLLOWERS:
        q &= Q(channel=RecipientChannel.FOLLOWER)
    if rule.kind == SegmentKind.LIST:
        if rule.member_ids is not None:
            return q & Q(pk__in=rule.member_ids)
        if rule.segment_id is None:
            return q & Q(pk__in=[])
        return q & Q(
            pk__in=SegmentMember.objects.filter(segment_id=rule.segment_id).values("recipient_id")
        )
    if rule.district_ids:
        q &= Q(district_id__in=rule.district_ids)
    if rule.function_tags:
        q &= Q(function_tag__in=rule.function_tags)
    if rule.risk_levels:
        q &= Q(risk_level__in=rule.risk_levels)
    if rule.tag_ids:
        q &= Q(
            Exists(
                RecipientTag.objects.filter(recipient_id=OuterRef("pk"), tag_id__in=rule.tag_ids)
            )
        )
    if rule.venue_rule:
        q &= _venue_q(rule)
    return q


def rule_recipients(rule: SegmentRule) -> QuerySet[Recipient]:
    return Recipient.objects.filter(segment_q(rule))


def segment_recipients(segment: Segment) -> QuerySet[Recipient]:
    """Everyone the saved segment describes, as one lazily evaluated query."""
    return rule_recipients(SegmentRule.from_segment(segment))


def segments_recipients(segments: Iterable[Segment]) -> QuerySet[Recipient]:
    """The union of several segments of ONE department, each person once (an OR of predicates)."""
    rules = [SegmentRule.from_segment(s) for s in segments]
    if not rules:
        return Recipient.objects.none()
    if len({r.department_id for r in rules}) != 1:
        raise ValueError("Segments of different departments cannot be combined.")
    combined = Q()
    for rule in rules:
        combined |= segment_q(rule)
    return Recipient.objects.filter(combined)


def segment_count(segment: Segment) -> int:
    return segment_recipients(segment).count()


def rule_count(rule: SegmentRule) -> int:
    return rule_recipients(rule).count()


# --- access-scoped reads -------------------------------------------------------------------


def recipient_list_for_user(*, user: UserLike) -> QuerySet[Recipient]:
    """Recipients of every department where the user may see audiences (erased rows included, blank)."""
    return Recipient.objects.filter(
        department__in=perms.departments_with_perm(user, perms.VIEW_AUDIENCE)
    )


def recipient_get_for_user(*, user: UserLike, pk: int) -> Recipient:
    recipient = recipient_list_for_user(user=user).filter(pk=pk).first()
    if recipient is None:
        raise Http404("No such recipient.")
    return recipient


def contact_departments_for_user(*, user: UserLike) -> set[int]:
    """Ids of departments whose recipients' full mobile numbers the user may see."""
    return set(
        perms.departments_with_perm(user, perms.VIEW_CONTACT_DETAILS).values_list("pk", flat=True)
    )


def segment_list_for_user(*, user: UserLike, department: Department) -> QuerySet[Segment]:
    if not perms.has_department_perm(user, perms.VIEW_AUDIENCE, department):
        return Segment.objects.none()
    return Segment.objects.filter(department=department).order_by("name")


def segment_get_for_user(*, user: UserLike, department: Department, pk: int) -> Segment:
    segment = segment_list_for_user(user=user, department=department).filter(pk=pk).first()
    if segment is None:
        raise Http404("No such segment.")
    return segment


def venue_list_for_user(*, user: UserLike, department: Department) -> QuerySet[Venue]:
    if not perms.has_department_perm(user, perms.VIEW_AUDIENCE, department):
        return Venue.objects.none()
    return Venue.objects.filter(department=department).select_related("district").order_by("code")


def import_job_get_for_user(*, user: UserLike, department: Department, pk: int) -> ImportJob:
    if not perms.has_department_perm(user, perms.MANAGE_AUDIENCE, department):
        raise Http404("No such import.")
    job = ImportJob.objects.filter(department=department, pk=pk).first()
    if job is None:
        raise Http404("No such import.")
    return job
