"""The approval binds exactly who is reached, and is checked again at send time.

The issue's points 1-4 as an attacker tried them: deleting or editing what a segment names after
approval, renaming the high-risk tag, widening a scheduled notice's audience behind the
approval's back, and importing recipients after submission; each through the service, the
pages, the admin and the JSON API.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from audiences import services as audience_services
from audiences.models import Recipient, RecipientTag, Segment, SubscriptionFilter, Tag
from audiences.services import SegmentInput
from audit.context import AuditContext, audit_context
from audit.models import AuditEvent
from delivery.models import DeliveryPlan
from delivery.services import planner
from notices import approval, reapproval
from notices.errors import ApprovalRefused
from notices.models import Approval, Notice, Status
from notices.testing import add_recipients, current_code, submitted_notice, targeted_fields

VERIFIED = AuditContext(otp_verified=True)


@pytest.fixture(autouse=True)
def _threshold(settings):
    settings.NOTICES_TWO_APPROVER_AUDIENCE = 8


@pytest.fixture
def flooded(cast_a):
    """Six recipients, two of them tagged "flooded"; a segment of the tagged ones (2 people)."""
    add_recipients(cast_a.department, 6)
    tag = Tag.objects.create(department=cast_a.department, name="flooded")
    RecipientTag.objects.bulk_create(
        [RecipientTag(recipient=r, tag=tag) for r in Recipient.objects.order_by("pk")[:2]]
    )
    segment = Segment.objects.create(department=cast_a.department, name="Flooded")
    segment.tags.add(tag)
    return segment


def approve(user, notice, *, code: bool = False):
    notice.refresh_from_db()
    with audit_context(VERIFIED):
        return approval.notice_approve(
            actor=user,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token=current_code(user) if code else None,
            reach_acknowledged=code,
        )


def approved_notice(cast, segment, **fields) -> Notice:
    notice = submitted_notice(
        cast.pr_officer, cast.department, **targeted_fields(segment, **fields)
    )
    return approve(cast.supervisor, notice)


def returned_events(notice, code=None):
    events = AuditEvent.objects.filter(
        action="notices.returned_for_approval", target_id=str(notice.pk)
    )
    return events.filter(data__code=code) if code else events


def event_version(notice) -> int:
    return returned_events(notice).order_by("-sequence").first().data["version"]


def assert_returned(notice, *, code: str, reach: int | None = None) -> AuditEvent:
    old_hash = notice.version_hash
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED
    assert notice.version == event_version(notice)
    assert notice.version_hash != old_hash
    assert notice.approved_at is None
    assert notice.status_reason
    assert not Approval.objects.filter(notice=notice, voided_at__isnull=True).exists()
    assert approval.approval_count(notice) == 0
    if reach is not None:
        assert notice.reach == reach
    event = returned_events(notice, code).get()
    assert event.data["previous_version_hash"] == old_hash
    assert event.data["version_hash"] == notice.version_hash
    return event


# --- 1. the hash binds the audience ---------------------------------------------------------


def test_deleting_a_tag_a_segment_uses_returns_the_approved_notice(cast_a, flooded):
    notice = approved_notice(cast_a, flooded)
    assert notice.status == Status.APPROVED
    assert notice.approved_reach == 2
    old_hash = notice.version_hash
    tag = flooded.tags.get()
    tag_id = tag.pk
    audience_services.owned_delete(actor=cast_a.department_admin, obj=tag)
    event = assert_returned(notice, code="audience_changed", reach=6)
    assert event.data["approvals_voided"] == 1
    assert event.data["cause"] == {"model": "tag", "id": tag_id, "change": "deleted"}
    # The approval given for 2 people covers nothing now: the old hash is refused ...
    with audit_context(VERIFIED), pytest.raises(ApprovalRefused) as caught:
        approval.notice_approve(actor=cast_a.supervisor2, notice=notice, version_hash=old_hash)
    assert caught.value.code == "stale_version"
    # ... and nothing is planned until someone approves what it now reaches.
    assert planner.plan_start(notice.pk) is None
    assert not DeliveryPlan.objects.filter(notice=notice).exists()


@pytest.mark.parametrize(
    "change",
    ["rename_tag", "members", "subscription", "districts", "delete_segment"],
)
def test_every_kind_of_segment_change_returns_a_scheduled_notice(cast_a, flooded, change):
    from datetime import timedelta

    from django.utils import timezone

    from audiences.models import District

    notice = approved_notice(cast_a, flooded, send_at=timezone.now() + timedelta(hours=2))
    assert notice.status == Status.SCHEDULED
    other = Segment.objects.create(department=cast_a.department, name="Spare")
    if change == "delete_segment":
        Notice.objects.get(pk=notice.pk).segments.add(other)
        notice.refresh_from_db()
        from notices.testing import seal_approved

        seal_approved(notice)
    tag = flooded.tags.get()
    data = SegmentInput(name="Flooded", tags=[tag])
    if change == "rename_tag":
        tag.name = "water-damage"
        audience_services.owned_save(actor=cast_a.department_admin, obj=tag, changed=["name"])
    elif change == "members":
        member = Recipient.objects.order_by("pk").first()
        audience_services.segment_update(
            actor=cast_a.department_admin,
            segment=flooded,
            data=SegmentInput(
                name="Flooded", kind="list", member_user_ids=[member.dingtalk_user_id]
            ),
        )
    elif change == "subscription":
        data.subscription = SubscriptionFilter.ANY
        audience_services.segment_update(actor=cast_a.department_admin, segment=flooded, data=data)
    elif change == "districts":
        data.districts = [District.objects.first()]
        audience_services.segment_update(actor=cast_a.department_admin, segment=flooded, data=data)
    else:
        audience_services.segment_delete(actor=cast_a.department_admin, segment=other)
    assert_returned(notice, code="audience_changed")


def test_a_change_that_does_not_touch_the_definition_voids_nothing(cast_a, flooded):
    notice = approved_notice(cast_a, flooded)
    tag = flooded.tags.get()
    tag.description = "Homes flooded in the last storm"
    audience_services.owned_save(actor=cast_a.department_admin, obj=tag, changed=["description"])
    notice.refresh_from_db()
    assert notice.status == Status.APPROVED
    assert approval.approval_count(notice) == 1
    assert not returned_events(notice).exists()


def test_the_reason_is_shown_to_approvers_and_author_and_in_the_api(
    cast_a, flooded, verified_client
):
    notice = approved_notice(cast_a, flooded)
    audience_services.owned_delete(actor=cast_a.department_admin, obj=flooded.tags.get())
    notice.refresh_from_db()
    needle = "The audience changed after submission"
    inbox = verified_client(cast_a.supervisor2).get(reverse("notices:inbox"))
    assert needle in inbox.content.decode()
    detail = verified_client(cast_a.pr_officer).get(reverse("notices:detail", args=[notice.pk]))
    assert needle in detail.content.decode()
    # The JSON API: the old hash is refused, the new one approved with the reason on record.
    client = verified_client(cast_a.supervisor2)
    url = reverse("notices:api-approve", args=[notice.pk])
    stale = client.post(url, json.dumps({"version_hash": "0" * 64}), "application/json")
    assert stale.status_code == 403
    assert stale.json()["code"] == "stale_version"
    fresh = client.post(url, json.dumps({"version_hash": notice.version_hash}), "application/json")
    assert fresh.status_code == 200, fresh.content
    assert fresh.json()["status"] == Status.APPROVED
    assert fresh.json()["reach"] == 6


def test_editing_the_segment_on_its_page_returns_the_notice(cast_a, flooded, verified_client):
    notice = approved_notice(cast_a, flooded)
    client = verified_client(cast_a.department_admin)
    response = client.post(
        reverse("audiences:segment-edit", args=["WSD", flooded.pk]),
        {"name": "Flooded", "kind": "filter", "subscription": "any"},  # the tag filter dropped
    )
    assert response.status_code == 302
    assert_returned(notice, code="audience_changed", reach=6)


def test_deleting_the_tag_in_the_admin_returns_the_notice(cast_a, flooded, verified_client):
    notice = approved_notice(cast_a, flooded)
    tag = flooded.tags.get()
    client = verified_client(cast_a.department_admin)
    response = client.post(reverse("admin:audiences_tag_delete", args=[tag.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Tag.objects.filter(pk=tag.pk).exists()
    assert_returned(notice, code="audience_changed", reach=6)


def test_moving_a_venue_into_a_radius_rule_returns_the_notice(cast_a):
    from datetime import timedelta

    from django.utils import timezone

    from audiences.models import CheckIn, Venue

    add_recipients(cast_a.department, 4)
    near = Venue.objects.create(
        department=cast_a.department, code="V1", name="Market", latitude=22.38, longitude=114.19
    )
    far = Venue.objects.create(
        department=cast_a.department, code="V2", name="Clinic", latitude=22.28, longitude=114.15
    )
    now = timezone.now()
    people = list(Recipient.objects.order_by("pk"))
    CheckIn.objects.create(recipient=people[0], venue=near, checked_in_at=now - timedelta(hours=1))
    for person in people[1:]:
        CheckIn.objects.create(recipient=person, venue=far, checked_in_at=now - timedelta(hours=1))
    segment = audience_services.segment_create(
        actor=cast_a.department_admin,
        department=cast_a.department,
        data=SegmentInput(
            name="Near the market",
            venue_rule=True,
            centre_latitude=22.38,
            centre_longitude=114.19,
            radius_m=500,
            checked_in_from=now - timedelta(days=1),
        ),
    )
    notice = approved_notice(cast_a, segment)
    assert notice.approved_reach == 1
    far.latitude, far.longitude = 22.3801, 114.1901
    audience_services.owned_save(
        actor=cast_a.department_admin, obj=far, changed=["latitude", "longitude"]
    )
    assert_returned(notice, code="audience_changed", reach=4)


# --- 2. high-risk is a flag of the tag, never its name ----------------------------------------


def test_renaming_the_high_risk_tag_does_not_lower_the_rule(cast_a, flooded):
    tag = flooded.tags.get()
    tag.high_risk = True
    audience_services.owned_save(actor=cast_a.department_admin, obj=tag, changed=["high_risk"])
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(flooded))
    assert approval.required_approvals(notice) == 2
    notice = approve(cast_a.supervisor, notice, code=True)
    assert notice.status == Status.SUBMITTED  # one of two
    tag.name = "ordinary-list"
    audience_services.owned_save(actor=cast_a.department_admin, obj=tag, changed=["name"])
    assert_returned(notice, code="audience_changed")
    assert approval.required_approvals(notice) == 2
    with pytest.raises(ApprovalRefused) as caught:
        approve(cast_a.supervisor2, notice)  # a session alone no longer does
    assert caught.value.code == "totp_required"


def test_a_tag_named_high_risk_means_nothing_without_the_flag(cast_a, flooded):
    tag = flooded.tags.get()
    tag.name = "high-risk"
    audience_services.owned_save(actor=cast_a.department_admin, obj=tag, changed=["name"])
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(flooded))
    assert approval.required_approvals(notice) == 1


def test_the_flag_change_is_audited_and_voids_approvals(cast_a, flooded):
    notice = approved_notice(cast_a, flooded)
    tag = flooded.tags.get()
    tag.high_risk = True
    audience_services.owned_save(actor=cast_a.department_admin, obj=tag, changed=["high_risk"])
    event = AuditEvent.objects.get(action="audiences.tag_risk_changed")
    assert event.data == {"tag": "flooded", "before": False, "after": True}
    assert event.actor == cast_a.department_admin
    assert_returned(notice, code="audience_changed")
    assert approval.required_approvals(notice) == 2


def test_the_flag_set_in_the_admin_is_audited_and_voids_approvals(cast_a, flooded, verified_client):
    notice = approved_notice(cast_a, flooded)
    tag = flooded.tags.get()
    response = verified_client(cast_a.department_admin).post(
        reverse("admin:audiences_tag_change", args=[tag.pk]),
        {
            "department": cast_a.department.pk,
            "name": "flooded",
            "description": "",
            "high_risk": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Tag.objects.get(pk=tag.pk).high_risk
    assert AuditEvent.objects.filter(action="audiences.tag_risk_changed").count() == 1
    assert_returned(notice, code="audience_changed")


# --- 3. checked again at send time -----------------------------------------------------------


def test_a_scheduled_notice_widened_behind_the_services_back_sends_nothing(
    cast_a, flooded, django_capture_on_commit_callbacks, mailoutbox
):
    from datetime import timedelta

    from django.utils import timezone

    from delivery.services import sweeper

    notice = approved_notice(cast_a, flooded, send_at=timezone.now() + timedelta(minutes=5))
    assert notice.status == Status.SCHEDULED
    assert notice.approved_reach == 2
    mailoutbox.clear()
    # A bulk delete sends no word to notices: only the send-time check can see it.
    Segment.tags.through.objects.filter(segment=flooded).delete()
    Notice.objects.filter(pk=notice.pk).update(send_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        sweeper.sweep()
    assert not DeliveryPlan.objects.filter(notice=notice).exists()
    event = assert_returned(notice, code="changed_at_send", reach=6)
    assert event.actor is None
    assert {m for msg in mailoutbox for m in msg.to} == {
        "wsd.supervisor@example.gov.hk",
        "wsd.supervisor2@example.gov.hk",
    }


def test_a_changed_definition_at_plan_start_sends_nothing(cast_a, flooded):
    notice = approved_notice(cast_a, flooded)
    Segment.objects.filter(pk=flooded.pk).update(subscription=SubscriptionFilter.ANY)
    assert planner.plan_notice(notice.pk) == 0
    assert not DeliveryPlan.objects.filter(notice=notice).exists()
    event = assert_returned(notice, code="changed_at_send")
    assert event.actor is None


# --- 4. reach counted at approval and at send time -------------------------------------------


def test_recipients_imported_after_submission_need_the_second_approver(
    cast_a, flooded, verified_client
):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(flooded))
    assert notice.reach == 2
    before = list(Recipient.objects.values_list("pk", flat=True))
    add_recipients(cast_a.department, 20, start=100)
    tag = flooded.tags.get()
    RecipientTag.objects.bulk_create(
        [RecipientTag(recipient=r, tag=tag) for r in Recipient.objects.exclude(pk__in=before)]
    )
    with pytest.raises(ApprovalRefused) as caught:
        approve(cast_a.supervisor, notice)
    assert caught.value.code == "totp_required"
    response = verified_client(cast_a.supervisor).post(
        reverse("notices:api-approve", args=[notice.pk]),
        json.dumps({"version_hash": notice.version_hash}),
        "application/json",
    )
    assert response.status_code == 403
    assert response.json()["code"] == "totp_required"
    notice = approve(cast_a.supervisor, notice, code=True)
    assert notice.status == Status.SUBMITTED
    assert notice.reach == 22
    notice = approve(cast_a.supervisor2, notice, code=True)
    assert notice.status == Status.APPROVED
    assert notice.approved_reach == 22


@pytest.fixture
def twenty(cast_a):
    """Twenty tagged recipients in a segment: approved by one, the threshold raised to 30."""
    add_recipients(cast_a.department, 20)
    tag = Tag.objects.create(department=cast_a.department, name="flooded")
    RecipientTag.objects.bulk_create(
        [RecipientTag(recipient=r, tag=tag) for r in Recipient.objects.all()]
    )
    segment = Segment.objects.create(department=cast_a.department, name="Flooded")
    segment.tags.add(tag)
    return segment, tag


def _tag_new(cast, tag, count, start):
    add_recipients(cast.department, count, start=start)
    RecipientTag.objects.bulk_create(
        [RecipientTag(recipient=r, tag=tag) for r in Recipient.objects.order_by("-pk")[:count]]
    )


def test_reach_grown_beyond_the_allowance_waits_for_approval(cast_a, twenty, settings):
    settings.NOTICES_TWO_APPROVER_AUDIENCE = 30
    segment, tag = twenty
    notice = approved_notice(cast_a, segment)
    assert notice.approved_reach == 20
    _tag_new(cast_a, tag, 2, 100)  # 22: 10% more, within the default allowance
    check = reapproval.send_check(Notice.objects.get(pk=notice.pk))
    assert check.ok
    assert check.reach == 22
    _tag_new(cast_a, tag, 1, 200)  # 23: more than 10%
    assert planner.plan_start(notice.pk) is None
    event = assert_returned(notice, code="reach_grew", reach=23)
    assert event.data["approved_reach"] == 20


def test_the_department_sets_the_allowance(cast_a, twenty, settings):
    settings.NOTICES_TWO_APPROVER_AUDIENCE = 30
    segment, tag = twenty
    cast_a.department.reach_growth_percent = 50
    cast_a.department.save()
    notice = approved_notice(cast_a, segment)
    _tag_new(cast_a, tag, 9, 100)  # 29: 45% more
    assert reapproval.send_check(Notice.objects.get(pk=notice.pk)).ok
    plan = planner.plan_start(notice.pk)
    assert plan is not None
    notice.refresh_from_db()
    assert notice.status == Status.SENDING


def test_crossing_the_two_approver_threshold_waits_for_approval(cast_a, twenty, settings):
    settings.NOTICES_TWO_APPROVER_AUDIENCE = 21
    segment, tag = twenty
    cast_a.department.reach_growth_percent = 50
    cast_a.department.save()
    notice = approved_notice(cast_a, segment)
    _tag_new(cast_a, tag, 2, 100)  # 22: within 50%, but over 21 people needs two approvers
    assert planner.plan_start(notice.pk) is None
    event = assert_returned(notice, code="more_approvers_needed", reach=22)
    assert event.data["required"] == 2
    assert event.data["approvals"] == 1


def test_the_allowance_is_set_on_the_department_settings_page(cast_a, verified_client):
    client = verified_client(cast_a.system_admin)
    response = client.post(
        reverse("accounts:department-settings", args=["WSD"]),
        {
            "name_en": cast_a.department.name_en,
            "name_zh": cast_a.department.name_zh,
            "dingtalk_agent_id": cast_a.department.dingtalk_agent_id,
            "dingtalk_edition": cast_a.department.dingtalk_edition,
            "reach_growth_percent": "25",
        },
    )
    assert response.status_code == 302
    cast_a.department.refresh_from_db()
    assert cast_a.department.reach_growth_percent == 25
    event = AuditEvent.objects.get(action="accounts.department_updated")
    assert event.data == {
        "before": {"reach_growth_percent": 10},
        "after": {"reach_growth_percent": 25},
    }
