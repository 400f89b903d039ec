"""Service-level tests: lifecycle, validation, and the approval rule attacked at its source."""

from __future__ import annotations

import datetime as dt

import pytest
from celery.signals import task_prerun
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.context import AuditContext, audit_context
from audit.models import AuditEvent
from common.errors import ApplicationError
from delivery import enqueue as delivery_enqueue
from notices import approval, attachments, errors, services, templating, versions
from notices.models import Approval, ContributionKind, NoticeContribution, Status
from notices.testing import (
    add_recipients,
    citywide_fields,
    current_code,
    everyone_segment,
    submitted_notice,
    targeted_fields,
    totp_device,
)

VERIFIED = AuditContext(otp_verified=True)


@pytest.fixture
def audience(cast_a):
    add_recipients(cast_a.department, 5)
    return everyone_segment(cast_a.department)


def refusals(notice, code=None):
    events = AuditEvent.objects.filter(action="notices.approval_refused", target_id=str(notice.pk))
    if code is not None:
        events = events.filter(data__code=code)
    return events


def snapshot(notice):
    notice.refresh_from_db()
    return (notice.status, notice.version, notice.version_hash, notice.approved_at)


def test_create_records_version_contribution_and_audit(cast_a, audience):
    notice = services.notice_create(
        actor=cast_a.pr_officer, department=cast_a.department, **targeted_fields(audience)
    )
    assert notice.status == Status.DRAFT
    assert len(notice.version_hash) == 64
    assert notice.versions.get().version_hash == notice.version_hash
    assert NoticeContribution.objects.filter(
        notice=notice, user=cast_a.pr_officer, kind=ContributionKind.WROTE
    ).exists()
    event = AuditEvent.objects.get(action="notices.created", target_id=str(notice.pk))
    assert event.data["version_hash"] == notice.version_hash


def test_supervisor_cannot_compose(cast_a, audience):
    with pytest.raises(PermissionDenied):
        services.notice_create(
            actor=cast_a.supervisor, department=cast_a.department, **targeted_fields(audience)
        )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"title_zh": "", "body_zh": ""}, "title_zh"),
        ({"body_en": "x" * 1001}, "body_en"),
        ({"buttons": []}, "buttons"),
        ({"send_at": timezone.now() - dt.timedelta(minutes=5)}, "send_at"),
        (
            {
                "buttons": [
                    {
                        "title_en": "A very long button title here",
                        "title_zh": "好",
                        "url": "https://a.hk/",
                    }
                ]
            },
            "buttons",
        ),
    ],
)
def test_bad_citywide_content_is_refused_next_to_the_field(cast_a, overrides, field):
    with pytest.raises(errors.NoticeInvalid) as caught:
        services.notice_create(
            actor=cast_a.pr_officer, department=cast_a.department, **citywide_fields(**overrides)
        )
    assert field in caught.value.errors
    assert not cast_a.department.notices.exists()


def test_targeted_notice_needs_an_audience(cast_a):
    with pytest.raises(errors.NoticeInvalid) as caught:
        services.notice_create(
            actor=cast_a.pr_officer,
            department=cast_a.department,
            **targeted_fields(None, segments=[]),
        )
    assert "segments" in caught.value.errors


def test_empty_audience_is_refused_on_submit(cast_a):
    segment = everyone_segment(cast_a.department)
    notice = services.notice_create(
        actor=cast_a.pr_officer, department=cast_a.department, **targeted_fields(segment)
    )
    with pytest.raises(errors.NoticeInvalid) as caught:
        services.notice_submit(actor=cast_a.pr_officer, notice=notice)
    assert "segments" in caught.value.errors
    notice.refresh_from_db()
    assert notice.status == Status.DRAFT


def test_other_departments_segment_is_refused(cast_a, cast_b):
    foreign = everyone_segment(cast_b.department)
    with pytest.raises(errors.NoticeInvalid):
        services.notice_create(
            actor=cast_a.pr_officer, department=cast_a.department, **targeted_fields(foreign)
        )


def test_submit_and_single_approval_from_verified_session(
    cast_a, audience, django_capture_on_commit_callbacks, mailoutbox
):
    with django_capture_on_commit_callbacks(execute=True):
        notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    assert notice.status == Status.SUBMITTED
    assert notice.reach == 5
    assert approval.required_approvals(notice) == 1
    with audit_context(VERIFIED), django_capture_on_commit_callbacks(execute=True):
        notice = approval.notice_approve(
            actor=cast_a.supervisor, notice=notice, version_hash=notice.version_hash
        )
    assert notice.status == Status.APPROVED
    assert AuditEvent.objects.filter(action="notices.approved", target_id=str(notice.pk)).exists()


def test_future_send_at_becomes_scheduled(cast_a, audience):
    send_at = timezone.now() + dt.timedelta(hours=2)
    notice = submitted_notice(
        cast_a.pr_officer, cast_a.department, **targeted_fields(audience, send_at=send_at)
    )
    with audit_context(VERIFIED):
        notice = approval.notice_approve(
            actor=cast_a.supervisor, notice=notice, version_hash=notice.version_hash
        )
    assert notice.status == Status.SCHEDULED


def test_citywide_needs_two_approvers_with_totp_and_acknowledgement(cast_a):
    add_recipients(cast_a.department, 3)
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **citywide_fields())
    assert approval.required_approvals(notice) == 2
    before = snapshot(notice)
    with audit_context(VERIFIED), pytest.raises(PermissionDenied):
        approval.notice_approve(
            actor=cast_a.supervisor, notice=notice, version_hash=notice.version_hash
        )
    assert refusals(notice, "totp_required").count() == 1
    with pytest.raises(PermissionDenied):
        approval.notice_approve(
            actor=cast_a.supervisor,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token=current_code(cast_a.supervisor),
        )
    assert refusals(notice, "reach_not_acknowledged").count() == 1
    with pytest.raises(PermissionDenied):
        approval.notice_approve(
            actor=cast_a.supervisor,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token="000000",
            reach_acknowledged=True,
        )
    assert refusals(notice, "bad_totp").count() == 1
    assert snapshot(notice) == before
    assert not Approval.objects.exists()
    # The wrong code started django-otp's throttle; a real person would wait a second.
    totp_device(cast_a.supervisor).throttle_reset()

    notice = approval.notice_approve(
        actor=cast_a.supervisor,
        notice=notice,
        version_hash=notice.version_hash,
        totp_token=current_code(cast_a.supervisor),
        reach_acknowledged=True,
    )
    assert notice.status == Status.SUBMITTED
    notice = approval.notice_approve(
        actor=cast_a.supervisor2,
        notice=notice,
        version_hash=notice.version_hash,
        totp_token=current_code(cast_a.supervisor2),
        reach_acknowledged=True,
    )
    assert notice.status == Status.APPROVED


def test_only_the_final_approval_queues_the_delivery_plan_once_on_commit(
    cast_a, django_capture_on_commit_callbacks
):
    add_recipients(cast_a.department, 3)
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **citywide_fields())
    planned = []

    def record(sender=None, task=None, **_kwargs):
        if sender.name == delivery_enqueue.PLAN_NOTICE:
            planned.append((task.request.args, task.request.delivery_info["priority"]))

    task_prerun.connect(record, weak=False)
    try:
        for approver, queued in ((cast_a.supervisor, 0), (cast_a.supervisor2, 1)):
            with django_capture_on_commit_callbacks() as callbacks:
                notice = approval.notice_approve(
                    actor=approver,
                    notice=notice,
                    version_hash=notice.version_hash,
                    totp_token=current_code(approver),
                    reach_acknowledged=True,
                )
            assert len(callbacks) == queued
            assert planned == []  # nothing is queued before the commit
        assert notice.status == Status.APPROVED
        for callback in callbacks:
            callback()
    finally:
        task_prerun.disconnect(record)
    # Citywide: the urgent priority.
    assert planned == [([notice.pk], delivery_enqueue.URGENT_PRIORITY)]


def test_high_risk_segment_and_large_audience_need_two(cast_a, settings):
    add_recipients(cast_a.department, 4, risk="high")
    risky = everyone_segment(cast_a.department, name="High risk", high_risk=True)
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(risky))
    assert approval.required_approvals(notice) == 2
    settings.NOTICES_TWO_APPROVER_AUDIENCE = 3
    plain = everyone_segment(cast_a.department, name="Plain")
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(plain))
    assert approval.required_approvals(notice) == 2


# --- the attack matrix at the service ------------------------------------------------------


def test_author_cannot_approve(cast_a, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    before = snapshot(notice)
    with audit_context(VERIFIED), pytest.raises(PermissionDenied):
        approval.notice_approve(
            actor=cast_a.pr_officer, notice=notice, version_hash=notice.version_hash
        )
    assert snapshot(notice) == before
    assert refusals(notice).count() == 1


def _dual_role(cast):
    """The cast's second supervisor also made a PR officer (roles may be combined)."""
    from accounts.models import Membership, Role
    from accounts.permissions import grant_role_permissions

    Membership.objects.create(
        user=cast.supervisor2, department=cast.department, role=Role.PR_OFFICER
    )
    grant_role_permissions(cast.supervisor2, Role.PR_OFFICER, cast.department)
    return cast.supervisor2


@pytest.mark.parametrize("role", ["wrote", "edited", "submitted"])
def test_contributors_cannot_approve(cast_a, audience, role):
    dual = _dual_role(cast_a)
    author = dual if role == "wrote" else cast_a.pr_officer
    notice = services.notice_create(
        actor=author, department=cast_a.department, **targeted_fields(audience)
    )
    if role == "edited":
        notice = services.notice_update(
            actor=dual, notice=notice, changes={"body_en": "Changed text."}
        )
    submitter = dual if role == "submitted" else cast_a.pr_officer
    notice = services.notice_submit(actor=submitter, notice=notice)
    before = snapshot(notice)
    with audit_context(VERIFIED), pytest.raises(PermissionDenied) as caught:
        approval.notice_approve(actor=dual, notice=notice, version_hash=notice.version_hash)
    assert caught.value.code == "own_work"
    assert snapshot(notice) == before
    assert refusals(notice, "own_work").count() == 1


def test_same_person_cannot_approve_twice(cast_a):
    add_recipients(cast_a.department, 3)
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **citywide_fields())
    approval.notice_approve(
        actor=cast_a.supervisor,
        notice=notice,
        version_hash=notice.version_hash,
        totp_token=current_code(cast_a.supervisor),
        reach_acknowledged=True,
    )
    before = snapshot(notice)
    with pytest.raises(PermissionDenied):
        approval.notice_approve(
            actor=cast_a.supervisor,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token=current_code(cast_a.supervisor),
            reach_acknowledged=True,
        )
    assert snapshot(notice) == before
    assert refusals(notice, "already_approved").count() == 1
    # The database refuses it too, whatever the code above it does.
    with pytest.raises(IntegrityError), transaction.atomic():
        Approval.objects.create(
            notice=notice,
            version=notice.version,
            version_hash=notice.version_hash,
            approver=cast_a.supervisor,
        )


def test_stale_version_is_refused_and_edit_voids_approvals(cast_a):
    add_recipients(cast_a.department, 3)
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **citywide_fields())
    old_hash = notice.version_hash
    approval.notice_approve(
        actor=cast_a.supervisor,
        notice=notice,
        version_hash=old_hash,
        totp_token=current_code(cast_a.supervisor),
        reach_acknowledged=True,
    )
    notice = services.notice_update(
        actor=cast_a.pr_officer, notice=notice, changes={"body_en": "Heavier rain."}
    )
    assert notice.version == 2
    assert notice.status == Status.DRAFT
    assert not Approval.objects.filter(notice=notice, voided_at__isnull=True).exists()
    notice = services.notice_submit(actor=cast_a.pr_officer, notice=notice)
    before = snapshot(notice)
    with pytest.raises(PermissionDenied):
        approval.notice_approve(
            actor=cast_a.supervisor2,
            notice=notice,
            version_hash=old_hash,
            totp_token=current_code(cast_a.supervisor2),
            reach_acknowledged=True,
        )
    assert snapshot(notice) == before
    assert refusals(notice, "stale_version").count() == 1
    assert approval.approval_count(notice) == 0


def test_other_departments_supervisor_cannot_approve(cast_a, cast_b, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    before = snapshot(notice)
    with audit_context(VERIFIED), pytest.raises(PermissionDenied):
        approval.notice_approve(
            actor=cast_b.supervisor,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token=current_code(cast_b.supervisor),
            reach_acknowledged=True,
        )
    assert snapshot(notice) == before
    assert refusals(notice, "not_approver").count() == 1


def test_unverified_session_without_code_cannot_approve(cast_a, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    with pytest.raises(PermissionDenied):
        approval.notice_approve(
            actor=cast_a.supervisor, notice=notice, version_hash=notice.version_hash
        )
    assert refusals(notice, "not_verified").count() == 1
    notice = approval.notice_approve(
        actor=cast_a.supervisor,
        notice=notice,
        version_hash=notice.version_hash,
        totp_token=current_code(cast_a.supervisor),
    )
    assert notice.status == Status.APPROVED


def test_system_cannot_approve(cast_a, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    with pytest.raises(PermissionDenied):
        approval.notice_approve(actor=None, notice=notice, version_hash=notice.version_hash)
    assert refusals(notice, "no_person").count() == 1


# --- rejection, cancel, templates ----------------------------------------------------------


def test_reject_needs_reason_and_returns_to_draft(cast_a, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    with pytest.raises(ApplicationError):
        services.notice_reject(actor=cast_a.supervisor, notice=notice, reason="  ")
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED
    rejected_hash = notice.version_hash
    notice = services.notice_reject(actor=cast_a.supervisor, notice=notice, reason="Wrong district")
    assert notice.status == Status.DRAFT
    assert notice.version == 2
    assert notice.version_hash != rejected_hash
    event = AuditEvent.objects.get(action="notices.rejected", target_id=str(notice.pk))
    assert event.data["version_hash"] == rejected_hash
    assert event.data["reason"] == "Wrong district"


def test_officer_cannot_reject(cast_a, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    with pytest.raises(PermissionDenied):
        services.notice_reject(actor=cast_a.pr_officer, notice=notice, reason="no")
    assert refusals(notice, "not_approver").count() == 1


def test_cancel_before_sending_only(cast_a, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    notice = services.notice_cancel(actor=cast_a.pr_officer, notice=notice, reason="Duplicate")
    assert notice.status == Status.CANCELLED
    with pytest.raises(ApplicationError):
        services.notice_cancel(actor=cast_a.pr_officer, notice=notice, reason="again")
    assert AuditEvent.objects.filter(action="notices.refused", target_id=str(notice.pk)).exists()


def test_cannot_edit_after_approval(cast_a, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    with audit_context(VERIFIED):
        approval.notice_approve(
            actor=cast_a.supervisor, notice=notice, version_hash=notice.version_hash
        )
    with pytest.raises(ApplicationError):
        services.notice_update(actor=cast_a.pr_officer, notice=notice, changes={"body_en": "x"})
    notice.refresh_from_db()
    assert notice.status == Status.APPROVED
    assert notice.version == 1


def test_template_needs_every_placeholder(cast_a):
    from notices.testing import rainstorm_template

    template = rainstorm_template(cast_a.department)
    assert templating.template_placeholders(template) == ["issue_time"]
    with pytest.raises(errors.NoticeInvalid) as caught:
        templating.notice_create_from_template(
            actor=cast_a.pr_officer, template=template, department=cast_a.department, values={}
        )
    assert "value_issue_time" in caught.value.errors
    assert not cast_a.department.notices.exists()


def test_integration_creates_and_submits_as_system(cast_a, django_capture_on_commit_callbacks):
    from notices.testing import rainstorm_template

    add_recipients(cast_a.department, 2)
    template = rainstorm_template(cast_a.department, "black")
    fired = timezone.now()
    notice = templating.notice_create_from_template(
        actor=None,
        template=template,
        department=cast_a.department,
        values={"issue_time": "14:05"},
        source="integration",
        triggered_at=fired,
        submit=True,
    )
    assert notice.status == Status.SUBMITTED
    assert notice.triggered_at == fired
    assert notice.source == "integration"
    assert "14:05" in notice.body_en
    assert "14:05" in notice.body_zh
    assert notice.expires_at is not None
    assert not notice.contributions.exists()
    # Any supervisor may approve: nobody in the department wrote it.
    for approver in (cast_a.supervisor, cast_a.supervisor2):
        notice = approval.notice_approve(
            actor=approver,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token=current_code(approver),
            reach_acknowledged=True,
        )
    assert notice.status == Status.APPROVED


def test_seeded_templates_are_valid(cast_a):
    saved = templating.templates_seed(actor=None, department=cast_a.department)
    assert {t.code for t in saved} >= {
        "rainstorm-amber",
        "rainstorm-red",
        "rainstorm-black",
        "rainstorm-cancelled",
        "water-outage",
    }
    for template in saved:
        values = dict.fromkeys(templating.template_placeholders(template), "08:00")
        fields = templating.template_fill(template, values)
        from notices import content as nc

        content = nc.Content(
            **{k: v for k, v in fields.items() if k in nc.Content.__dataclass_fields__}
        )
        assert nc.validate_content(content) == {}, template.code


def test_refused_create_is_audited(cast_a, audience):
    with pytest.raises(PermissionDenied):
        services.notice_create(
            actor=cast_a.auditor, department=cast_a.department, **targeted_fields(audience)
        )
    event = AuditEvent.objects.get(action="notices.refused")
    assert event.data["operation"] == "create"
    assert event.actor == cast_a.auditor


def _touch(segment, **changes):
    for name, value in changes.items():
        setattr(segment, name, value)
    segment.save()


def test_audience_redefined_behind_the_services_back_is_returned_at_approval(cast_a, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    _touch(audience, function_tags=["frontline"])  # a save() the services never saw
    old_hash = notice.version_hash
    with audit_context(VERIFIED), pytest.raises(PermissionDenied):
        approval.notice_approve(
            actor=cast_a.supervisor, notice=notice, version_hash=notice.version_hash
        )
    notice.refresh_from_db()
    # Nothing approved; the notice is a new version over its audience as it now is, with the
    # reason on it, and its submitter still may not approve it.
    assert notice.status == Status.SUBMITTED
    assert notice.version == 2
    assert notice.version_hash == versions.compute_version_hash(notice) != old_hash
    assert notice.status_reason
    assert not Approval.objects.filter(notice=notice).exists()
    assert refusals(notice, "audience_changed").count() == 1
    assert NoticeContribution.objects.filter(
        notice=notice, version=2, user=cast_a.pr_officer, kind=ContributionKind.SUBMITTED
    ).exists()


def test_submit_after_audience_change_makes_a_new_version(cast_a, audience):
    notice = services.notice_create(
        actor=cast_a.pr_officer, department=cast_a.department, **targeted_fields(audience)
    )
    first_hash = notice.version_hash
    _touch(audience, name="Everyone we know")
    notice = services.notice_submit(actor=cast_a.pr_officer, notice=notice)
    assert notice.version == 2
    assert notice.version_hash != first_hash
    assert notice.version_hash == versions.compute_version_hash(notice)
    assert NoticeContribution.objects.filter(
        notice=notice, version=2, user=cast_a.pr_officer, kind=ContributionKind.WROTE
    ).exists()


def test_attachments_are_checked_for_type_and_size(cast_a, audience, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    with pytest.raises(errors.NoticeInvalid) as caught:
        attachments.attachment_upload(
            actor=cast_a.pr_officer,
            department=cast_a.department,
            media_type="image",
            upload=SimpleUploadedFile("notice.pdf", b"%PDF-1.4"),
        )
    assert "attachment" in caught.value.errors
    settings.NOTICES_MAX_ATTACHMENT_BYTES = 1000
    with pytest.raises(errors.NoticeInvalid):
        attachments.attachment_upload(
            actor=cast_a.pr_officer,
            department=cast_a.department,
            media_type="image",
            upload=SimpleUploadedFile("map.png", b"\x89PNG" + b"0" * 2000),
        )
    with pytest.raises(errors.NoticeInvalid):
        attachments.attachment_upload(
            actor=cast_a.pr_officer,
            department=cast_a.department,
            media_type="voice",
            upload=SimpleUploadedFile("call.mp3", b"ID3" + b"0" * 100),
        )
    image = attachments.attachment_upload(
        actor=cast_a.pr_officer,
        department=cast_a.department,
        media_type="image",
        upload=SimpleUploadedFile("map.png", b"\x89PNG" + b"0" * 100),
    )
    assert len(image.sha256) == 64
    # An image attached to a file message is refused next to the field.
    with pytest.raises(errors.NoticeInvalid) as caught:
        services.notice_create(
            actor=cast_a.pr_officer,
            department=cast_a.department,
            **targeted_fields(audience, kind="file", attachment=image),
        )
    assert "attachment" in caught.value.errors
    notice = services.notice_create(
        actor=cast_a.pr_officer,
        department=cast_a.department,
        **targeted_fields(audience, kind="image", attachment=image),
    )
    assert versions.notice_snapshot(notice)["attachment"]["sha256"] == image.sha256


def test_preflight_follows_delivery_strategy(cast_a):
    from audiences.membercount import member_counts_store
    from audiences.models import Recipient, SubscriptionState
    from notices.preflight import preflight

    add_recipients(cast_a.department, 250)
    # The directory's count says what to_all_user reaches: the organisation is the audience.
    member_counts_store(cast_a.department, 250, {}, timezone.now())
    figures = preflight(
        department=cast_a.department,
        tier="citywide",
        segments=[],
        languages=2,
        requires_confirmation=False,
    )
    assert figures["recipients"] == 250
    assert figures["strategy"] == "org_wide"
    assert figures["calls"] == 1  # one organisation-wide send
    assert figures["sms_saving_hkd"] == pytest.approx(250 * 0.22)
    assert figures["monthly_calls"] == 5000
    # Once somebody opts out, an organisation-wide send would reach them: batches of 100 ids.
    Recipient.objects.filter(pk=Recipient.objects.first().pk).update(
        subscription_state=SubscriptionState.UNSUBSCRIBED
    )
    figures = preflight(
        department=cast_a.department,
        tier="citywide",
        segments=[],
        languages=2,
        requires_confirmation=False,
        fresh=True,
    )
    assert figures["recipients"] == 249
    assert figures["calls"] == 4  # ceil(249 / 100) + one more for the second language
    confirm = preflight(
        department=cast_a.department,
        tier="targeted",
        segments=[everyone_segment(cast_a.department)],
        languages=1,
        requires_confirmation=True,
    )
    assert confirm["calls"] == 249  # one message per person: personal confirmation links


def test_segment_with_a_high_risk_tag_needs_two(cast_a):
    from audiences.models import Recipient, RecipientTag, Tag

    add_recipients(cast_a.department, 3)
    tag = Tag.objects.create(department=cast_a.department, name="dialysis", high_risk=True)
    RecipientTag.objects.bulk_create(
        [RecipientTag(recipient=r, tag=tag) for r in Recipient.objects.all()]
    )
    segment = everyone_segment(cast_a.department, name="Tagged")
    segment.tags.add(tag)
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(segment))
    assert approval.required_approvals(notice) == 2
