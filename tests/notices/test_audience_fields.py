"""Every model field that can change who a notice reaches, walked one by one.

The fields come from the models themselves (`_meta`), so a field added later fails
`test_every_field_is_classified` until it is given a place here. Each field is one of:

- VOIDS through a service: changing it the way the app does returns the approved notice for
  approval at once (approvals voided, audited);
- VOIDS at send: no page, admin or service changes it, but the approved hash covers it, so a
  change made behind the app's back (a shell, a bulk update) stops the send (the planner's
  send-time check);
- POPULATION: who matches a segment's rule, not the rule itself (imports, directory sync, check
  ins); a change that grows the audience beyond the department's allowance stops the send;
- IRRELEVANT: changed, the notice keeps its hash and approvals and reaches the same people.

The world is built so every predicate of a segment is in force, with one outsider per predicate
who fails only that one: each POPULATION change lets exactly that person in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import Model
from django.utils import timezone

from audiences import services as audience_services
from audiences.models import (
    CheckIn,
    District,
    Recipient,
    RecipientTag,
    Segment,
    SegmentMember,
    SubscriptionSource,
    SubscriptionState,
    Tag,
    Venue,
)
from audiences.selectors import segments_recipients
from audiences.services import SegmentInput
from audit.context import AuditContext, audit_context
from audit.models import AuditEvent
from notices import approval, reapproval
from notices.models import Attachment, Notice, NoticeTemplate, Status
from notices.testing import submitted_notice, targeted_fields
from notices.versions import compute_version_hash, notice_snapshot

VOIDS_SERVICE = "voids through a service"
VOIDS_SEND = "voids at send"
POPULATION = "population"
IRRELEVANT = "irrelevant"


@dataclass
class World:
    cast: Any
    other: Any
    d1: District
    d2: District
    t1: Tag
    t2: Tag
    v1: Venue
    v2: Venue
    filtered: Segment
    listed: Segment
    people: dict[str, Recipient] = field(default_factory=dict)
    notice: Notice | None = None


def _person(world: World, key: str, **overrides: Any) -> Recipient:
    now = timezone.now()
    tags = overrides.pop("tags", [world.t1])
    visit = overrides.pop("visit", (world.v1, now - timedelta(hours=1)))
    values: dict[str, Any] = {
        "department": world.cast.department,
        "dingtalk_user_id": f"walk-{key}",
        "name": f"Person {key}",
        "district": world.d1,
        "function_tag": "frontline",
        "risk_level": "medium",
        "subscription_state": SubscriptionState.SUBSCRIBED,
        "subscription_source": SubscriptionSource.IMPORT,
        "subscription_changed_at": now,
    }
    values.update(overrides)
    person = Recipient.objects.create(**values)
    for tag in tags:
        RecipientTag.objects.create(recipient=person, tag=tag)
    if visit is not None:
        CheckIn.objects.create(recipient=person, venue=visit[0], checked_in_at=visit[1])
    world.people[key] = person
    return person


def build_world(cast_a: Any, cast_b: Any) -> World:
    dept = cast_a.department
    d1, d2 = District.objects.order_by("pk")[:2]
    t1 = Tag.objects.create(department=dept, name="t1")
    t2 = Tag.objects.create(department=dept, name="t2")
    v1 = Venue.objects.create(
        department=dept, code="V1", name="Market", latitude=22.38, longitude=114.19
    )
    v2 = Venue.objects.create(
        department=dept, code="V2", name="Clinic", latitude=22.28, longitude=114.15
    )
    now = timezone.now()
    filtered = Segment.objects.create(
        department=dept,
        name="Every predicate",
        function_tags=["frontline"],
        risk_levels=["medium"],
        venue_rule=True,
        centre_latitude=22.38,
        centre_longitude=114.19,
        radius_m=300,
        checked_in_from=now - timedelta(days=1),
        checked_in_to=now + timedelta(days=1),
    )
    filtered.districts.add(d1)
    filtered.tags.add(t1)
    filtered.venues.add(v1)
    listed = Segment.objects.create(department=dept, name="Chosen", kind="list")
    world = World(cast_a, cast_b, d1, d2, t1, t2, v1, v2, filtered, listed)
    for i in range(6):
        _person(world, f"in{i}")
    _person(world, "o_district", district=d2)
    _person(world, "o_function", function_tag="logistics")
    _person(world, "o_risk", risk_level="low")
    _person(world, "o_sub", subscription_state=SubscriptionState.UNSUBSCRIBED)
    _person(world, "o_erased", erased_at=now)
    _person(world, "o_channel", channel="follower")  # a Service Window follower
    _person(world, "o_dept", department=cast_b.department)
    _person(world, "o_tag", tags=[t2])
    _person(world, "o_venue", visit=(v2, now - timedelta(hours=1)))
    _person(world, "o_time", visit=(v1, now - timedelta(days=3)))
    _person(world, "o_nocheckin", visit=None)
    # In the list only (fails the filter's district); holds the spare tag and check-in rows.
    chosen = _person(world, "chosen", district=d2)
    SegmentMember.objects.create(segment=listed, recipient=chosen)
    notice = submitted_notice(
        cast_a.pr_officer, dept, **targeted_fields(filtered, segments=[filtered, listed])
    )
    with audit_context(AuditContext(otp_verified=True)):
        world.notice = approval.notice_approve(
            actor=cast_a.supervisor, notice=notice, version_hash=notice.version_hash
        )
    assert world.notice.status == Status.APPROVED
    assert world.notice.approved_reach == 7
    return world


# --- how each field is changed ---------------------------------------------------------------


def _segment_input(segment: Segment, **changes: Any) -> SegmentInput:
    data = SegmentInput(
        name=segment.name,
        description=segment.description,
        kind=segment.kind,
        subscription=segment.subscription,
        districts=list(segment.districts.all()),
        function_tags=list(segment.function_tags),
        risk_levels=list(segment.risk_levels),
        tags=list(segment.tags.all()),
        member_user_ids=list(
            Recipient.objects.filter(
                pk__in=SegmentMember.objects.filter(segment=segment).values("recipient_id")
            ).values_list("dingtalk_user_id", flat=True)
        ),
        venue_rule=segment.venue_rule,
        venues=list(segment.venues.all()),
        centre_latitude=segment.centre_latitude,
        centre_longitude=segment.centre_longitude,
        radius_m=segment.radius_m,
        checked_in_from=segment.checked_in_from,
        checked_in_to=segment.checked_in_to,
    )
    for name, value in changes.items():
        setattr(data, name, value)
    return data


def seg(**changes: Any) -> Callable[[World], None]:
    def run(w: World) -> None:
        values = {k: (v(w) if callable(v) else v) for k, v in changes.items()}
        audience_services.segment_update(
            actor=w.cast.department_admin,
            segment=w.filtered,
            data=_segment_input(w.filtered, **values),
        )

    return run


def owned(attr: str, value: Any, obj: Callable[[World], Model]) -> Callable[[World], None]:
    def run(w: World) -> None:
        target = obj(w)
        setattr(target, attr, value(w) if callable(value) else value)
        audience_services.owned_save(actor=w.cast.department_admin, obj=target, changed=[attr])

    return run


def orm(model: type[Model], pk: Callable[[World], int], **values: Any) -> Callable[[World], None]:
    def run(w: World) -> None:
        resolved = {k: (v(w) if callable(v) else v) for k, v in values.items()}
        model._default_manager.filter(pk=pk(w)).update(**resolved)

    return run


def person(key: str) -> Callable[[World], int]:
    return lambda w: w.people[key].pk


def later(days: int = 1) -> Callable[[World], Any]:
    return lambda w: timezone.now() + timedelta(days=days)


def tag_row(key: str, tag: str) -> Callable[[World], int]:
    return lambda w: RecipientTag.objects.get(recipient=w.people[key], tag=getattr(w, tag)).pk


def visit(key: str) -> Callable[[World], int]:
    return lambda w: CheckIn.objects.get(recipient=w.people[key]).pk


def add_member(w: World) -> None:
    audience_services.segment_update(
        actor=w.cast.department_admin,
        segment=w.listed,
        data=_segment_input(
            w.listed, member_user_ids=["walk-chosen", w.people["o_district"].dingtalk_user_id]
        ),
    )


SEGMENT: dict[str, tuple[str, Callable[[World], None]]] = {
    "department": (
        VOIDS_SEND,
        orm(Segment, lambda w: w.filtered.pk, department=lambda w: w.other.department),
    ),
    "name": (VOIDS_SERVICE, seg(name="Renamed")),
    "description": (IRRELEVANT, seg(description="Who we mean")),
    "kind": (VOIDS_SERVICE, seg(kind="list", member_user_ids=["walk-in0"])),
    "subscription": (VOIDS_SERVICE, seg(subscription="any")),
    "channel": (VOIDS_SERVICE, seg(channel="both")),
    "districts": (VOIDS_SERVICE, seg(districts=lambda w: [w.d1, w.d2])),
    "function_tags": (VOIDS_SERVICE, seg(function_tags=["frontline", "logistics"])),
    "risk_levels": (VOIDS_SERVICE, seg(risk_levels=["medium", "low"])),
    "tags": (VOIDS_SERVICE, seg(tags=lambda w: [w.t1, w.t2])),
    "members": (VOIDS_SERVICE, add_member),
    "venue_rule": (VOIDS_SERVICE, seg(venue_rule=False)),
    "venues": (VOIDS_SERVICE, seg(venues=lambda w: [w.v1, w.v2])),
    "centre_latitude": (VOIDS_SERVICE, seg(centre_latitude=22.3805)),
    "centre_longitude": (VOIDS_SERVICE, seg(centre_longitude=114.1905)),
    "radius_m": (VOIDS_SERVICE, seg(radius_m=400)),
    "checked_in_from": (
        VOIDS_SERVICE,
        seg(checked_in_from=lambda w: timezone.now() - timedelta(days=4)),
    ),
    "checked_in_to": (
        VOIDS_SERVICE,
        seg(checked_in_to=lambda w: timezone.now() + timedelta(days=2)),
    ),
    "created_by": (
        IRRELEVANT,
        orm(Segment, lambda w: w.filtered.pk, created_by=lambda w: w.cast.auditor),
    ),
    "created_at": (IRRELEVANT, orm(Segment, lambda w: w.filtered.pk, created_at=later(-5))),
    "updated_at": (IRRELEVANT, orm(Segment, lambda w: w.filtered.pk, updated_at=later())),
}

TAG: dict[str, tuple[str, Callable[[World], None]]] = {
    # The rule matches tag ids only; the services refuse the move anyway.
    "department": (
        IRRELEVANT,
        orm(Tag, lambda w: w.t1.pk, department=lambda w: w.other.department),
    ),
    "name": (VOIDS_SERVICE, owned("name", "t1-renamed", lambda w: w.t1)),
    "description": (IRRELEVANT, owned("description", "first tag", lambda w: w.t1)),
    "high_risk": (VOIDS_SERVICE, owned("high_risk", True, lambda w: w.t1)),
}

VENUE: dict[str, tuple[str, Callable[[World], None]]] = {
    "department": (
        VOIDS_SEND,
        orm(Venue, lambda w: w.v1.pk, department=lambda w: w.other.department),
    ),
    "code": (VOIDS_SERVICE, owned("code", "V1A", lambda w: w.v1)),
    "name": (VOIDS_SERVICE, owned("name", "Wet market", lambda w: w.v1)),
    "district": (IRRELEVANT, owned("district", lambda w: w.d2, lambda w: w.v1)),
    "latitude": (VOIDS_SERVICE, owned("latitude", 22.3801, lambda w: w.v1)),
    "longitude": (VOIDS_SERVICE, owned("longitude", 114.1901, lambda w: w.v1)),
}

DISTRICT: dict[str, tuple[str, Callable[[World], None]]] = {
    "code": (VOIDS_SEND, orm(District, lambda w: w.d1.pk, code="ZZ")),
    "eac_letter": (IRRELEVANT, orm(District, lambda w: w.d1.pk, eac_letter="Z")),
    "name_en": (VOIDS_SEND, orm(District, lambda w: w.d1.pk, name_en="Renamed")),
    "name_zh": (VOIDS_SEND, orm(District, lambda w: w.d1.pk, name_zh="改名")),
    "region": (IRRELEVANT, orm(District, lambda w: w.d1.pk, region="NT")),
    "hko_place": (IRRELEVANT, orm(District, lambda w: w.d1.pk, hko_place="Elsewhere")),
}

SEGMENT_MEMBER: dict[str, tuple[str, Callable[[World], None]]] = {
    "segment": (
        VOIDS_SEND,
        orm(
            SegmentMember,
            lambda w: SegmentMember.objects.get(segment=w.listed).pk,
            segment=lambda w: w.filtered,
        ),
    ),
    "recipient": (
        VOIDS_SEND,
        orm(
            SegmentMember,
            lambda w: SegmentMember.objects.get(segment=w.listed).pk,
            recipient=lambda w: w.people["o_district"],
        ),
    ),
}

RECIPIENT: dict[str, tuple[str, Callable[[World], None]]] = {
    "department": (
        POPULATION,
        orm(Recipient, person("o_dept"), department=lambda w: w.cast.department),
    ),
    "dingtalk_user_id": (
        IRRELEVANT,
        orm(Recipient, person("in0"), dingtalk_user_id="walk-in0-new"),
    ),
    "name": (IRRELEVANT, orm(Recipient, person("in0"), name="Renamed")),
    "mobile": (IRRELEVANT, orm(Recipient, person("in0"), mobile="+85291234567")),
    "language": (IRRELEVANT, orm(Recipient, person("in0"), language="en")),
    "district": (POPULATION, orm(Recipient, person("o_district"), district=lambda w: w.d1)),
    "function_tag": (POPULATION, orm(Recipient, person("o_function"), function_tag="frontline")),
    "risk_level": (POPULATION, orm(Recipient, person("o_risk"), risk_level="medium")),
    "tags": (POPULATION, lambda w: w.people["o_tag"].tags.add(w.t1)),
    "subscription_state": (
        POPULATION,
        orm(Recipient, person("o_sub"), subscription_state="subscribed"),
    ),
    "subscription_source": (
        IRRELEVANT,
        orm(Recipient, person("in0"), subscription_source="directory"),
    ),
    "subscription_changed_at": (
        IRRELEVANT,
        orm(Recipient, person("in0"), subscription_changed_at=later(-2)),
    ),
    "dingtalk_dept_ids": (IRRELEVANT, orm(Recipient, person("in0"), dingtalk_dept_ids=[7])),
    "created_at": (IRRELEVANT, orm(Recipient, person("in0"), created_at=later(-9))),
    "updated_at": (IRRELEVANT, orm(Recipient, person("in0"), updated_at=later())),
    "erased_at": (POPULATION, orm(Recipient, person("o_erased"), erased_at=None)),
    "channel": (POPULATION, orm(Recipient, person("o_channel"), channel="member")),
}

RECIPIENT_TAG: dict[str, tuple[str, Callable[[World], None]]] = {
    "recipient": (
        POPULATION,
        orm(RecipientTag, tag_row("chosen", "t1"), recipient=lambda w: w.people["o_tag"]),
    ),
    "tag": (POPULATION, orm(RecipientTag, tag_row("o_tag", "t2"), tag=lambda w: w.t1)),
}

CHECK_IN: dict[str, tuple[str, Callable[[World], None]]] = {
    "recipient": (
        POPULATION,
        orm(CheckIn, visit("chosen"), recipient=lambda w: w.people["o_nocheckin"]),
    ),
    "venue": (POPULATION, orm(CheckIn, visit("o_venue"), venue=lambda w: w.v1)),
    "checked_in_at": (
        POPULATION,
        orm(CheckIn, visit("o_time"), checked_in_at=lambda w: timezone.now() - timedelta(hours=2)),
    ),
}


def notice_orm(**values: Any) -> Callable[[World], None]:
    return orm(Notice, lambda w: w.notice.pk, **values)


def _attachment(w: World) -> Attachment:
    return Attachment.objects.create(
        department=w.cast.department,
        media_type="image",
        file="x.png",
        original_name="x.png",
        size=3,
        sha256="0" * 64,
    )


def _template(w: World) -> NoticeTemplate:
    return NoticeTemplate.objects.create(
        department=w.cast.department, code="walk", name="Walk", tier="targeted", kind="text"
    )


NOTICE: dict[str, tuple[str, Callable[[World], None]]] = {
    # What is sent, to whom and when: all inside the hash (notices.versions.notice_snapshot).
    "department": (VOIDS_SEND, notice_orm(department=lambda w: w.other.department)),
    "tier": (VOIDS_SEND, notice_orm(tier="closed_loop")),
    "kind": (VOIDS_SEND, notice_orm(kind="markdown")),
    "title_en": (VOIDS_SEND, notice_orm(title_en="Changed")),
    "title_zh": (VOIDS_SEND, notice_orm(title_zh="改")),
    "body_en": (VOIDS_SEND, notice_orm(body_en="Changed")),
    "body_zh": (VOIDS_SEND, notice_orm(body_zh="改")),
    "buttons": (
        VOIDS_SEND,
        notice_orm(buttons=[{"title_en": "A", "title_zh": "甲", "url": "https://a.hk/"}]),
    ),
    "link_url": (VOIDS_SEND, notice_orm(link_url="https://a.hk/")),
    "link_pic_url": (VOIDS_SEND, notice_orm(link_pic_url="https://a.hk/p.png")),
    "attachment": (VOIDS_SEND, notice_orm(attachment=_attachment)),
    "segments": (VOIDS_SEND, lambda w: w.notice.segments.remove(w.listed)),
    "high_risk": (VOIDS_SEND, notice_orm(high_risk=True)),
    "requires_confirmation": (VOIDS_SEND, notice_orm(requires_confirmation=True)),
    "voice_from_text": (VOIDS_SEND, notice_orm(voice_from_text=True)),
    # Read only when voice_from_text is on (then inside the hash with it).
    "voice_summary": (IRRELEVANT, notice_orm(voice_summary="摘要")),
    "remind_after_minutes": (VOIDS_SEND, notice_orm(remind_after_minutes=30)),
    "max_reminders": (VOIDS_SEND, notice_orm(max_reminders=2)),
    "remind_whom": (VOIDS_SEND, notice_orm(remind_whom="unread")),
    "send_at": (VOIDS_SEND, notice_orm(send_at=later(-1))),
    "expires_at": (VOIDS_SEND, notice_orm(expires_at=later())),
    "classification": (VOIDS_SEND, notice_orm(classification="restricted")),
    "version": (VOIDS_SEND, notice_orm(version=9)),
    # Bookkeeping: who made it, how and when, and where it stands.
    "status_reason": (IRRELEVANT, notice_orm(status_reason="a note")),
    "reach": (IRRELEVANT, notice_orm(reach=7000)),
    "approved_reach": (IRRELEVANT, notice_orm(approved_reach=7)),
    "created_by": (IRRELEVANT, notice_orm(created_by=lambda w: w.cast.auditor)),
    "source": (IRRELEVANT, notice_orm(source="integration")),
    "template": (IRRELEVANT, notice_orm(template=_template)),
    "triggered_at": (IRRELEVANT, notice_orm(triggered_at=later(-1))),
    "external_ref": (IRRELEVANT, notice_orm(external_ref="cap-1")),
    "submitted_at": (IRRELEVANT, notice_orm(submitted_at=later(-1))),
    "approvers_alerted_version": (IRRELEVANT, notice_orm(approvers_alerted_version=1)),
    "approved_at": (IRRELEVANT, notice_orm(approved_at=later(-1))),
    "created_at": (IRRELEVANT, notice_orm(created_at=later(-3))),
    "updated_at": (IRRELEVANT, notice_orm(updated_at=later())),
}
# The status and the hash itself are what the check compares, not what it covers.
NOTICE_CHECKED_NOT_COVERED = {"status", "version_hash"}

WALK: dict[type[Model], dict[str, tuple[str, Callable[[World], None]]]] = {
    Segment: SEGMENT,
    Tag: TAG,
    Venue: VENUE,
    District: DISTRICT,
    SegmentMember: SEGMENT_MEMBER,
    Recipient: RECIPIENT,
    RecipientTag: RECIPIENT_TAG,
    CheckIn: CHECK_IN,
    Notice: NOTICE,
}


def model_fields(model: type[Model]) -> set[str]:
    """Every field the model declares (columns and many-to-many), but its primary key."""
    return {
        f.name
        for f in [*model._meta.concrete_fields, *model._meta.many_to_many]
        if not f.primary_key
    }


def test_every_field_is_classified() -> None:
    for model, table in WALK.items():
        declared = model_fields(model)
        if model is Notice:
            declared -= NOTICE_CHECKED_NOT_COVERED
        assert declared == set(table), (
            f"{model.__name__}: classify {sorted(declared - set(table))}; "
            f"no longer fields: {sorted(set(table) - declared)}"
        )


def test_resolving_an_audience_reads_only_the_walked_tables(cast_a, cast_b) -> None:
    """Derived from the query itself: a table the audience query reads is a walked model."""
    world = build_world(cast_a, cast_b)
    sql = str(segments_recipients([world.filtered, world.listed]).query).lower()
    walked = {m._meta.db_table for m in WALK}
    read = {t for t in connection.introspection.table_names() if f'"{t}"' in sql or f" {t} " in sql}
    assert read, sql
    assert read <= walked, read - walked


CASES = [(model, name) for model, table in WALK.items() for name in sorted(table)]


def _recipients(world: World) -> set[int]:
    notice = Notice.objects.get(pk=world.notice.pk)
    return set(segments_recipients(list(notice.segments.all())).values_list("pk", flat=True))


@pytest.mark.parametrize(("model", "name"), CASES, ids=[f"{m.__name__}.{n}" for m, n in CASES])
def test_each_field_voids_the_approval_or_is_irrelevant(cast_a, cast_b, model, name) -> None:
    world = build_world(cast_a, cast_b)
    kind, change = WALK[model][name]
    approved = Notice.objects.get(pk=world.notice.pk)
    before = _recipients(world)
    change(world)
    notice = Notice.objects.select_related("department").get(pk=world.notice.pk)
    returned = AuditEvent.objects.filter(
        action="notices.returned_for_approval", target_id=str(notice.pk)
    )
    if kind == VOIDS_SERVICE:
        assert notice.status == Status.SUBMITTED
        assert notice.version_hash != approved.version_hash
        assert approval.approval_count(notice) == 0
        assert returned.get().data["code"] == "audience_changed"
    elif kind == VOIDS_SEND:
        assert compute_version_hash(notice) != approved.version_hash
        assert reapproval.send_check(notice).code == "changed_at_send"
        assert reapproval.notice_check_before_send(notice.pk).code == "changed_at_send"
        assert Notice.objects.get(pk=notice.pk).status == Status.SUBMITTED
    elif kind == POPULATION:
        assert compute_version_hash(notice) == approved.version_hash
        assert notice.status == Status.APPROVED
        after = _recipients(world)
        assert len(after) == len(before) + 1, (before, after)
        check = reapproval.notice_check_before_send(notice.pk)
        assert check.code == "reach_grew"
        assert (check.approved_reach, check.reach) == (7, 8)
    else:
        assert kind == IRRELEVANT
        assert notice.status == Status.APPROVED
        assert compute_version_hash(notice) == approved.version_hash
        assert notice_snapshot(notice) == notice_snapshot(approved) or model is not Notice
        assert approval.approval_count(notice) == 1
        assert not returned.exists()
        assert _recipients(world) == before
        assert reapproval.send_check(notice).ok
