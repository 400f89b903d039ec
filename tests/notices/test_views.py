"""Pages and JSON endpoints: compose, preview, templates, inbox, and the approval rule attacked through them."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from notices import approval, services
from notices.models import Approval, Notice, Status
from notices.testing import (
    add_recipients,
    citywide_fields,
    compose_data,
    current_code,
    everyone_segment,
    rainstorm_template,
    submitted_notice,
    targeted_fields,
)


@pytest.fixture
def audience(cast_a):
    add_recipients(cast_a.department, 5)
    return everyone_segment(cast_a.department)


def refused(notice, code):
    return AuditEvent.objects.filter(
        action="notices.approval_refused", target_id=str(notice.pk), data__code=code
    ).count()


def state(notice):
    notice.refresh_from_db()
    return (
        notice.status,
        notice.version,
        notice.version_hash,
        Approval.objects.filter(notice=notice).count(),
    )


# --- compose -------------------------------------------------------------------------------


def test_compose_page_renders_both_languages_and_preflight(cast_a, verified_client, audience):
    client = verified_client(cast_a.pr_officer)
    response = client.get(reverse("notices:compose", args=[cast_a.department.code]))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="preview-en"' in body
    assert 'id="preview-zh"' in body
    assert 'id="pf-recipients"' in body
    assert "js/notices.js" in body


def test_compose_is_refused_to_supervisors_and_other_departments(cast_a, cast_b, verified_client):
    assert (
        verified_client(cast_a.supervisor)
        .get(reverse("notices:compose", args=[cast_a.department.code]))
        .status_code
        == 404
    )
    assert (
        verified_client(cast_b.pr_officer)
        .get(reverse("notices:compose", args=[cast_a.department.code]))
        .status_code
        == 404
    )


def test_compose_saves_a_draft(cast_a, verified_client, audience):
    client = verified_client(cast_a.pr_officer)
    response = client.post(
        reverse("notices:compose", args=[cast_a.department.code]), compose_data(audience)
    )
    notice = Notice.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("notices:detail", args=[notice.pk])
    assert notice.status == Status.DRAFT
    assert notice.created_by == cast_a.pr_officer


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"tier": "citywide", "title_zh": "", "body_zh": ""}, "title_zh", "citywide notice needs"),
        ({"body_en": "x" * 2100}, "body_en", "DingTalk allows 2,048"),
        ({"send_at": "2020-01-01T10:00"}, "send_at", "in the past"),
        ({"segments": []}, "segments", "at least one segment"),
        ({"kind": "image"}, "upload", None),
    ],
)
def test_bad_input_is_refused_next_to_the_field(
    cast_a, verified_client, audience, overrides, field, message
):
    client = verified_client(cast_a.pr_officer)
    data = compose_data(audience, **overrides)
    if field == "upload":
        from django.core.files.uploadedfile import SimpleUploadedFile

        data["upload"] = SimpleUploadedFile(
            "evil.exe", b"MZ" * 10, content_type="application/octet-stream"
        )
        field = "attachment"
    response = client.post(reverse("notices:compose", args=[cast_a.department.code]), data)
    assert response.status_code == 200
    form = response.context["form"]
    errors = " ".join(
        str(e) for e in form.errors.get(field if field in form.fields else "__all__", [])
    )
    if field == "attachment":
        errors = " ".join(" ".join(v) for v in form.errors.values())
        assert "must be one of" in errors
    else:
        assert message in errors, form.errors
    assert not Notice.objects.exists()
    assert not AuditEvent.objects.filter(action="notices.attachment_uploaded").exists()


def test_preview_returns_messages_counters_and_preflight(cast_a, verified_client, audience):
    client = verified_client(cast_a.pr_officer)
    response = client.post(
        reverse("notices:preview", args=[cast_a.department.code]),
        compose_data(
            audience,
            kind="action_card",
            button_1_title_en="Book",
            button_1_title_zh="預約",
            button_1_url="https://www.wsd.gov.hk/",
        ),
    )
    assert response.status_code == 200
    data = response.json()
    assert data["languages"]["en"]["message"]["msgtype"] == "action_card"
    assert data["languages"]["zh"]["message"]["action_card"]["btn_json_list"][0]["title"] == "預約"
    assert data["languages"]["zh"]["bytes"] > 0
    assert data["languages"]["en"]["byte_limit"] == 2048
    assert data["errors"] == {}
    assert data["preflight"]["recipients"] == 5
    assert data["preflight"]["calls"] >= 1
    assert data["preflight"]["sms_saving_hkd"] == pytest.approx(5 * 0.22)
    assert data["required_approvals"] == 1


def test_preview_reports_content_over_the_limit(cast_a, verified_client, audience):
    client = verified_client(cast_a.pr_officer)
    data = client.post(
        reverse("notices:preview", args=[cast_a.department.code]),
        compose_data(audience, kind="markdown", title_zh="長" * 70),
    ).json()
    assert "title_zh" in data["errors"]
    assert data["languages"]["zh"]["title_chars"] == 70
    assert data["languages"]["zh"]["title_limit"] == 64


def test_template_picker_asks_for_placeholders_then_fills(cast_a, verified_client):
    template = rainstorm_template(cast_a.department)
    client = verified_client(cast_a.pr_officer)
    url = reverse("notices:compose", args=[cast_a.department.code])
    response = client.get(url, {"template": template.pk})
    assert "value_issue_time" in response.context["values_form"].fields
    response = client.get(url, {"template": template.pk, "value_issue_time": ""})
    assert response.context["values_form"].errors
    response = client.get(url, {"template": template.pk, "value_issue_time": "10:15"})
    form = response.context["form"]
    assert "10:15" in form.initial["body_en"]
    assert form.initial["tier"] == "citywide"
    assert form.initial["button_1_title_zh"] == "安全提示"
    assert form.initial["expires_at"] is not None  # the template's six-hour expiry


def test_detail_shows_versions_and_history(cast_a, verified_client, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    response = verified_client(cast_a.auditor).get(reverse("notices:detail", args=[notice.pk]))
    assert response.status_code == 200
    assert notice.version_hash in response.content.decode()
    assert "notices.submitted" in response.content.decode()


def test_other_department_cannot_see_a_notice(cast_a, cast_b, verified_client, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    assert (
        verified_client(cast_b.supervisor)
        .get(reverse("notices:detail", args=[notice.pk]))
        .status_code
        == 404
    )


def test_submit_through_the_page_alerts_approvers(
    cast_a, verified_client, audience, django_capture_on_commit_callbacks, mailoutbox
):
    notice = services.notice_create(
        actor=cast_a.pr_officer, department=cast_a.department, **targeted_fields(audience)
    )
    client = verified_client(cast_a.pr_officer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("notices:submit", args=[notice.pk]))
    assert response.status_code == 302
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED
    # No DingTalk app is configured for the test department, so the alert falls back to e-mail.
    assert {m for msg in mailoutbox for m in msg.to} == {
        "wsd.supervisor@example.gov.hk",
        "wsd.supervisor2@example.gov.hk",
    }
    assert AuditEvent.objects.filter(
        action="notices.approvers_alerted", target_id=str(notice.pk)
    ).exists()


# --- the approval inbox --------------------------------------------------------------------


def test_inbox_lists_what_waits_with_reach_and_tier(cast_a, cast_b, verified_client, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    response = verified_client(cast_a.supervisor).get(reverse("notices:inbox"))
    rows = response.context["rows"]
    assert [r["notice"].pk for r in rows] == [notice.pk]
    assert rows[0]["required"] == 1
    assert f'id="inbox-{notice.pk}"' in response.content.decode()
    chinese = verified_client(cast_a.supervisor).get(
        reverse("notices:inbox"), HTTP_ACCEPT_LANGUAGE="zh-hant"
    )
    assert "<dt>已等候</dt>" in chinese.content.decode()  # the time waited, not a status
    assert verified_client(cast_b.supervisor).get(reverse("notices:inbox")).context["rows"] == []


def test_inbox_approves_a_one_approver_notice(cast_a, verified_client, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    response = verified_client(cast_a.supervisor).post(
        reverse("notices:approve", args=[notice.pk]),
        {"version_hash": notice.version_hash, "next": "inbox"},
    )
    assert response.status_code == 302
    notice.refresh_from_db()
    assert notice.status == Status.APPROVED


def test_inbox_rejects_with_reason(cast_a, verified_client, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    client = verified_client(cast_a.supervisor)
    client.post(reverse("notices:reject", args=[notice.pk]), {"reason": ""})
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED
    client.post(reverse("notices:reject", args=[notice.pk]), {"reason": "Wrong date"})
    notice.refresh_from_db()
    assert notice.status == Status.DRAFT
    assert notice.rejections.get().reason == "Wrong date"


def test_page_attacks_are_refused_audited_and_change_nothing(cast_a, cast_b, verified_client):
    add_recipients(cast_a.department, 4)
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **citywide_fields())
    url = reverse("notices:approve", args=[notice.pk])
    before = state(notice)

    # The author (not a supervisor) posts an approval.
    verified_client(cast_a.pr_officer).post(url, {"version_hash": notice.version_hash})
    assert refused(notice, "not_approver") == 1
    # A supervisor of another department: 404, and still on record.
    assert (
        verified_client(cast_b.supervisor)
        .post(url, {"version_hash": notice.version_hash})
        .status_code
        == 404
    )
    assert refused(notice, "not_approver") == 2
    # Two-approver notice without a fresh code.
    supervisor = verified_client(cast_a.supervisor)
    supervisor.post(url, {"version_hash": notice.version_hash, "reach_acknowledged": "on"})
    assert refused(notice, "totp_required") == 1
    # A stale version.
    supervisor.post(
        url, {"version_hash": "0" * 64, "totp_token": "123456", "reach_acknowledged": "on"}
    )
    assert refused(notice, "stale_version") == 1
    assert state(notice) == before

    # A real first approval, then the same supervisor again.
    supervisor.post(
        url,
        {
            "version_hash": notice.version_hash,
            "totp_token": current_code(cast_a.supervisor),
            "reach_acknowledged": "on",
        },
    )
    assert approval.approval_count(notice) == 1
    middle = state(notice)
    supervisor.post(
        url,
        {
            "version_hash": notice.version_hash,
            "totp_token": current_code(cast_a.supervisor),
            "reach_acknowledged": "on",
        },
    )
    assert refused(notice, "already_approved") == 1
    assert state(notice) == middle


# --- JSON endpoints ------------------------------------------------------------------------


def post_json(client, url, payload):
    return client.post(url, json.dumps(payload), content_type="application/json")


def test_api_attacks_are_refused_audited_and_change_nothing(
    cast_a, cast_b, verified_client, audience
):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    url = reverse("notices:api-approve", args=[notice.pk])
    before = state(notice)
    response = post_json(
        verified_client(cast_a.pr_officer), url, {"version_hash": notice.version_hash}
    )
    assert response.status_code == 403
    assert response.json()["code"] == "not_approver"
    assert (
        post_json(
            verified_client(cast_b.supervisor), url, {"version_hash": notice.version_hash}
        ).status_code
        == 404
    )
    response = post_json(verified_client(cast_a.supervisor), url, {"version_hash": "stale"})
    assert response.json()["code"] == "stale_version"
    assert refused(notice, "not_approver") == 2
    assert refused(notice, "stale_version") == 1
    assert state(notice) == before

    response = post_json(
        verified_client(cast_a.supervisor), url, {"version_hash": notice.version_hash}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "approved"


def test_api_edit_then_stale_approval(cast_a, verified_client, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    old = notice.version_hash
    services.notice_update(actor=cast_a.pr_officer, notice=notice, changes={"body_en": "New time."})
    services.notice_submit(actor=cast_a.pr_officer, notice=notice)
    response = post_json(
        verified_client(cast_a.supervisor),
        reverse("notices:api-approve", args=[notice.pk]),
        {"version_hash": old},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "stale_version"
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED


def test_api_reject_needs_reason(cast_a, verified_client, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    url = reverse("notices:api-reject", args=[notice.pk])
    assert post_json(verified_client(cast_a.supervisor), url, {}).status_code == 400
    assert post_json(verified_client(cast_a.pr_officer), url, {"reason": "x"}).status_code == 403
    assert (
        post_json(verified_client(cast_a.supervisor), url, {"reason": "No"}).json()["status"]
        == "draft"
    )


def _dual_role(cast):
    from accounts.models import Membership, Role
    from accounts.permissions import grant_role_permissions

    Membership.objects.create(
        user=cast.supervisor2, department=cast.department, role=Role.PR_OFFICER
    )
    grant_role_permissions(cast.supervisor2, Role.PR_OFFICER, cast.department)
    return cast.supervisor2


@pytest.mark.parametrize("role", ["wrote", "edited", "submitted"])
def test_inbox_refuses_contributors(cast_a, verified_client, audience, role):
    dual = _dual_role(cast_a)
    author = dual if role == "wrote" else cast_a.pr_officer
    notice = services.notice_create(
        actor=author, department=cast_a.department, **targeted_fields(audience)
    )
    if role == "edited":
        # Edited through the edit page, as a person would.
        client = verified_client(dual)
        response = client.post(
            reverse("notices:edit", args=[notice.pk]),
            compose_data(audience, body_en="Edited text."),
        )
        assert response.status_code == 302
        notice.refresh_from_db()
        assert notice.version == 2
    notice = services.notice_submit(
        actor=dual if role == "submitted" else cast_a.pr_officer, notice=notice
    )
    client = verified_client(dual)
    page = client.get(reverse("notices:inbox"))
    # Not waiting for them: listed as waiting for someone else, with the reason and no Approve.
    assert [r["notice"].pk for r in page.context["rows"]] == []
    assert [r["notice"].pk for r in page.context["others"]] == [notice.pk]
    assert "so another supervisor must approve it" in page.content.decode()
    assert b'name="approve"' not in page.content
    before = state(notice)
    client.post(
        reverse("notices:approve", args=[notice.pk]),
        {"version_hash": notice.version_hash, "next": "inbox"},
    )
    assert state(notice) == before
    assert refused(notice, "own_work") == 1


def test_editing_on_the_compose_page_voids_approvals(cast_a, verified_client):
    add_recipients(cast_a.department, 4)
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **citywide_fields())
    old_hash = notice.version_hash
    approval.notice_approve(
        actor=cast_a.supervisor,
        notice=notice,
        version_hash=old_hash,
        totp_token=current_code(cast_a.supervisor),
        reach_acknowledged=True,
    )
    officer = verified_client(cast_a.pr_officer)
    response = officer.post(
        reverse("notices:edit", args=[notice.pk]),
        compose_data(
            None,
            tier="citywide",
            kind="action_card",
            body_en="Heavier rain now.",
            button_1_title_en="Advice",
            button_1_title_zh="提示",
            button_1_url="https://www.hko.gov.hk/",
            status="approved",  # not a form field: ignored
        ),
    )
    assert response.status_code == 302
    notice.refresh_from_db()
    assert notice.status == Status.DRAFT
    assert notice.version == 2
    assert not Approval.objects.filter(notice=notice, voided_at__isnull=True).exists()
    officer.post(reverse("notices:submit", args=[notice.pk]))
    verified_client(cast_a.supervisor2).post(
        reverse("notices:approve", args=[notice.pk]),
        {
            "version_hash": old_hash,
            "totp_token": current_code(cast_a.supervisor2),
            "reach_acknowledged": "on",
        },
    )
    assert refused(notice, "stale_version") == 1
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED
    assert approval.approval_count(notice) == 0


def test_compose_page_cannot_edit_an_approved_notice(cast_a, verified_client, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    verified_client(cast_a.supervisor).post(
        reverse("notices:approve", args=[notice.pk]), {"version_hash": notice.version_hash}
    )
    response = verified_client(cast_a.pr_officer).post(
        reverse("notices:edit", args=[notice.pk]), compose_data(audience, body_en="Sneaky change.")
    )
    assert response.status_code == 200
    assert "can no longer be edited" in str(response.context["form"].non_field_errors())
    notice.refresh_from_db()
    assert notice.status == Status.APPROVED
    assert notice.body_en != "Sneaky change."
    event = AuditEvent.objects.get(action="notices.refused", target_id=str(notice.pk))
    assert event.data["code"] == "not_editable"
    assert event.data["version_hash"] == notice.version_hash


def test_compose_with_an_image_and_nothing_half_saved_on_error(
    cast_a, verified_client, audience, tmp_path, settings
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from notices.models import Attachment

    settings.MEDIA_ROOT = tmp_path
    client = verified_client(cast_a.pr_officer)
    url = reverse("notices:compose", args=[cast_a.department.code])
    bad = compose_data(audience, kind="image", send_at="2020-01-01T10:00")
    bad["upload"] = SimpleUploadedFile("map.png", b"\x89PNG" + b"0" * 64, content_type="image/png")
    response = client.post(url, bad)
    assert response.status_code == 200
    assert "send_at" in response.context["form"].errors
    assert not Attachment.objects.exists()
    assert not Notice.objects.exists()
    good = compose_data(audience, kind="image")
    good["upload"] = SimpleUploadedFile("map.png", b"\x89PNG" + b"0" * 64, content_type="image/png")
    assert client.post(url, good).status_code == 302
    notice = Notice.objects.get()
    assert notice.attachment.media_type == "image"
    assert notice.attachment.size == 68


def test_approval_page_shows_what_the_author_saw_and_who_may_act(cast_a, verified_client, audience):
    notice = services.notice_create(
        actor=cast_a.pr_officer,
        department=cast_a.department,
        **targeted_fields(
            audience, body_en="Tonight **no water** in [Sha Tin](https://www.wsd.gov.hk/)."
        ),
    )
    notice = services.notice_submit(actor=cast_a.pr_officer, notice=notice)
    html = verified_client(cast_a.supervisor).get(reverse("notices:detail", args=[notice.pk]))
    page = html.content.decode()
    assert "<strong>no water</strong>" in page  # markdown rendered, not raw **
    assert "**no water**" not in page
    assert 'href="https://www.wsd.gov.hk/"' in page
    assert 'id="approval-review"' in page
    assert 'id="review-reach">' in page
    assert "One supervisor" in page  # the rule that applies
    assert cast_a.pr_officer.username in page  # who wrote it
    assert 'name="approve"' in page
    # The author sees why not instead of Approve.
    own = verified_client(cast_a.pr_officer).get(reverse("notices:detail", args=[notice.pk]))
    assert b'name="approve"' not in own.content
    # After approving, a supervisor no longer sees it as waiting for them.
    citywide = services.notice_submit(
        actor=cast_a.pr_officer,
        notice=services.notice_create(
            actor=cast_a.pr_officer, department=cast_a.department, **citywide_fields()
        ),
    )
    approval.notice_approve(
        actor=cast_a.supervisor,
        notice=citywide,
        version_hash=citywide.version_hash,
        totp_token=current_code(cast_a.supervisor),
        reach_acknowledged=True,
    )
    inbox = verified_client(cast_a.supervisor).get(reverse("notices:inbox"))
    assert citywide.pk not in [r["notice"].pk for r in inbox.context["rows"]]
    assert "Waiting for a second supervisor" in inbox.content.decode()
    second = verified_client(cast_a.supervisor2).get(reverse("notices:inbox"))
    assert citywide.pk in [r["notice"].pk for r in second.context["rows"]]
    assert cast_a.pr_officer.username in second.content.decode()  # the author
