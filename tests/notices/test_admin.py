"""The back office: scoped lists, read-only records, and approve/reject actions through the service."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from accounts.models import Membership, Role
from accounts.permissions import grant_role_permissions
from audit.models import AuditEvent
from notices import services
from notices.models import Approval, Status
from notices.testing import (
    add_recipients,
    citywide_fields,
    current_code,
    everyone_segment,
    submitted_notice,
    targeted_fields,
)

CHANGELIST = "admin:notices_notice_changelist"


@pytest.fixture
def audience(cast_a):
    add_recipients(cast_a.department, 5)
    return everyone_segment(cast_a.department)


def act(client, action, notices, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(n.pk) for n in notices], **extra}
    return client.post(reverse(CHANGELIST), data)


def refused(notice, code):
    return AuditEvent.objects.filter(
        action="notices.approval_refused", target_id=str(notice.pk), data__code=code
    ).count()


def dual_role(cast):
    Membership.objects.create(
        user=cast.supervisor2, department=cast.department, role=Role.PR_OFFICER
    )
    grant_role_permissions(cast.supervisor2, Role.PR_OFFICER, cast.department)
    return cast.supervisor2


def test_changelist_is_scoped_to_the_department(cast_a, cast_b, verified_client, audience):
    mine = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    add_recipients(cast_b.department, 2)
    theirs = submitted_notice(
        cast_b.pr_officer, cast_b.department, **targeted_fields(everyone_segment(cast_b.department))
    )
    response = verified_client(cast_a.supervisor).get(reverse(CHANGELIST))
    assert response.status_code == 200
    ids = [n.pk for n in response.context["cl"].result_list]
    assert ids == [mine.pk]
    assert theirs.pk not in ids
    assert "FEHD" not in response.content.decode()
    client = verified_client(cast_a.supervisor)
    assert client.get(reverse("admin:notices_notice_change", args=[theirs.pk])).status_code in (
        302,
        404,
    )


def test_notices_and_approvals_cannot_be_written_in_the_admin(cast_a, verified_client, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    client = verified_client(cast_a.supervisor)
    assert client.get(reverse("admin:notices_approval_add")).status_code == 403
    response = client.post(
        reverse("admin:notices_notice_change", args=[notice.pk]), {"status": "approved"}
    )
    assert response.status_code == 403
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED
    assert not Approval.objects.exists()


def test_approve_action_asks_for_code_then_goes_through_the_service(
    cast_a, verified_client, audience
):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    client = verified_client(cast_a.supervisor)
    response = act(client, "approve_selected", [notice])
    assert response.status_code == 200
    assert f'name="version_hash_{notice.pk}"' in response.content.decode()
    act(
        client,
        "approve_selected",
        [notice],
        apply="1",
        **{f"version_hash_{notice.pk}": notice.version_hash},
    )
    notice.refresh_from_db()
    assert notice.status == Status.APPROVED
    assert AuditEvent.objects.filter(action="notices.approved", target_id=str(notice.pk)).exists()


@pytest.mark.parametrize("role", ["wrote", "edited", "submitted"])
def test_admin_action_refuses_contributors(cast_a, verified_client, audience, role):
    dual = dual_role(cast_a)
    author = dual if role == "wrote" else cast_a.pr_officer
    notice = services.notice_create(
        actor=author, department=cast_a.department, **targeted_fields(audience)
    )
    if role == "edited":
        notice = services.notice_update(actor=dual, notice=notice, changes={"body_en": "Edited."})
    notice = services.notice_submit(
        actor=dual if role == "submitted" else cast_a.pr_officer, notice=notice
    )
    act(
        verified_client(dual),
        "approve_selected",
        [notice],
        apply="1",
        **{f"version_hash_{notice.pk}": notice.version_hash},
    )
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED
    assert refused(notice, "own_work") == 1
    assert not Approval.objects.exists()


def test_admin_action_refuses_two_approver_notice_without_code_and_stale_hash(
    cast_a, verified_client
):
    add_recipients(cast_a.department, 3)
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **citywide_fields())
    client = verified_client(cast_a.supervisor)
    hash_field = {f"version_hash_{notice.pk}": notice.version_hash}
    act(client, "approve_selected", [notice], apply="1", reach_acknowledged="on", **hash_field)
    assert refused(notice, "totp_required") == 1
    act(
        client,
        "approve_selected",
        [notice],
        apply="1",
        reach_acknowledged="on",
        totp_token=current_code(cast_a.supervisor),
        **{f"version_hash_{notice.pk}": "f" * 64},
    )
    assert refused(notice, "stale_version") == 1
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED
    assert not Approval.objects.exists()
    act(
        client,
        "approve_selected",
        [notice],
        apply="1",
        reach_acknowledged="on",
        totp_token=current_code(cast_a.supervisor),
        **hash_field,
    )
    act(
        client,
        "approve_selected",
        [notice],
        apply="1",
        reach_acknowledged="on",
        totp_token=current_code(cast_a.supervisor),
        **hash_field,
    )
    assert refused(notice, "already_approved") == 1
    assert Approval.objects.count() == 1


def test_reject_action_needs_a_reason(cast_a, verified_client, audience):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    client = verified_client(cast_a.supervisor)
    act(client, "reject_selected", [notice], apply="1", reason="")
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED
    act(client, "reject_selected", [notice], apply="1", reason="Wrong district")
    notice.refresh_from_db()
    assert notice.status == Status.DRAFT


def test_other_departments_supervisor_cannot_approve_in_the_admin(
    cast_a, cast_b, verified_client, audience
):
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    client = verified_client(cast_b.supervisor)
    act(
        client,
        "approve_selected",
        [notice],
        apply="1",
        **{f"version_hash_{notice.pk}": notice.version_hash},
    )
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED
    assert not Approval.objects.exists()
    assert refused(notice, "not_approver") == 1
