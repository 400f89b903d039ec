"""Credentials follow the four-eyes rule (issue 15, point 5) and every refusal is on record
(point 6): the attack was a system administrator setting a supervisor's password, resetting
their authenticator, logging in as them and approving."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone

from accounts import credentials, services
from accounts.models import (
    ChangeState,
    EnrolmentLink,
    Membership,
    PrivilegedChange,
    Role,
)
from audit.actions import AuditAction
from audit.context import AuditContext, audit_context
from audit.models import AuditEvent
from common.testing.cast import TEST_PASSWORD, give_authenticator, verified_client_for
from notices import approval
from notices.errors import ApprovalRefused
from notices.models import Status
from notices.testing import add_recipients, everyone_segment, submitted_notice, targeted_fields

NEW_PASSWORD = "a-long-new-passphrase-42"


@pytest.fixture
def second_admin(cast_a) -> User:
    return services.staff_create(
        actor=None,
        username="wsd.sysadmin2",
        full_name="Second Admin",
        email="wsd.sysadmin2@example.gov.hk",
        department=cast_a.department,
        role=Role.SYSTEM_ADMIN,
    )


def refusals(operation: str, path: str | None = None):
    events = AuditEvent.objects.filter(action=AuditAction.REFUSED, data__operation=operation)
    return events.filter(data__path=path) if path else events


def link_from(mailoutbox) -> str:
    for message in reversed(mailoutbox):
        found = re.search(r"https?://\S+/account/enrol/\S+/", message.body)
        if found:
            return found.group(0).split("/account/", 1)[1]
    raise AssertionError("no enrolment link was mailed")


# --- nobody sets another person's password -----------------------------------------------------


@pytest.mark.django_db
def test_the_admin_refuses_to_set_another_persons_password(cast_a) -> None:
    before = User.objects.get(pk=cast_a.supervisor.pk).password
    client = verified_client_for(cast_a.system_admin)
    url = reverse("admin:auth_user_password_change", args=[cast_a.supervisor.pk])
    assert client.get(url).status_code == 403
    response = client.post(url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 403
    assert User.objects.get(pk=cast_a.supervisor.pk).password == before
    event = refusals("password_set", "admin").first()
    assert event is not None
    assert event.actor == cast_a.system_admin
    assert event.target_id == str(cast_a.supervisor.pk)
    assert refusals("password_set").count() == 2


# --- an approver's reset needs a second system administrator ----------------------------------


@pytest.mark.django_db
def test_an_approvers_reset_waits_for_a_second_admin_and_sends_a_one_time_link(
    cast_a, second_admin, django_capture_on_commit_callbacks, mailoutbox, client
) -> None:
    give_authenticator(cast_a.supervisor)
    admin_client = verified_client_for(cast_a.system_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:auth_user_changelist"),
            {"action": "reset_credentials", "_selected_action": [cast_a.supervisor.pk]},
        )
    assert response.status_code == 302
    change = PrivilegedChange.objects.get(user=cast_a.supervisor)
    assert change.state == ChangeState.PENDING
    assert cast_a.supervisor.totpdevice_set.exists()  # nothing happens yet
    assert User.objects.get(pk=cast_a.supervisor.pk).check_password(TEST_PASSWORD)
    assert AuditEvent.objects.filter(action=AuditAction.CHANGE_REQUESTED).count() == 1
    assert [m.to for m in mailoutbox] == [["wsd.supervisor@example.gov.hk"]]  # told
    # The requester cannot be the second pair of eyes, through the service or the admin.
    with pytest.raises(PermissionDenied):
        credentials.privileged_change_approve(actor=cast_a.system_admin, change=change)
    admin_client.post(
        reverse("admin:accounts_privilegedchange_changelist"),
        {"action": "approve_changes", "_selected_action": [change.pk]},
    )
    change.refresh_from_db()
    assert change.state == ChangeState.PENDING
    assert refusals("change_approve", "service").count() == 1
    assert refusals("change_approve", "admin").count() == 1
    # The second system administrator approves in the back office: it takes effect.
    with django_capture_on_commit_callbacks(execute=True):
        verified_client_for(second_admin).post(
            reverse("admin:accounts_privilegedchange_changelist"),
            {"action": "approve_changes", "_selected_action": [change.pk]},
        )
    change.refresh_from_db()
    assert change.state == ChangeState.APPLIED
    assert change.decided_by == second_admin
    assert not cast_a.supervisor.totpdevice_set.exists()
    assert not User.objects.get(pk=cast_a.supervisor.pk).has_usable_password()
    assert AuditEvent.objects.filter(action=AuditAction.CHANGE_APPROVED).count() == 1
    reset = AuditEvent.objects.get(action=AuditAction.CREDENTIALS_RESET)
    assert reset.data["requested_by"] == "wsd.sysadmin"
    assert reset.data["approved_by"] == "wsd.sysadmin2"
    # Only the person gets the link (no DingTalk app here, so by e-mail), and it works once.
    assert mailoutbox[-1].to == ["wsd.supervisor@example.gov.hk"]
    path = "/account/" + link_from(mailoutbox)
    link = EnrolmentLink.objects.get(change=change)
    assert link.sent_via == "email"
    assert link.expires_at <= timezone.now() + timedelta(hours=4)
    assert client.get(path).status_code == 200
    response = client.post(path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert User.objects.get(pk=cast_a.supervisor.pk).check_password(NEW_PASSWORD)
    assert AuditEvent.objects.filter(action=AuditAction.ENROLMENT_LINK_USED).count() == 1
    assert client.get(path).status_code == 410
    assert AuditEvent.objects.filter(action=AuditAction.ENROLMENT_LINK_REFUSED).count() == 1


@pytest.mark.django_db
def test_telling_twice_sends_the_link_once(
    cast_a, django_capture_on_commit_callbacks, mailoutbox
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        change = credentials.credentials_reset_request(
            actor=cast_a.system_admin, user=cast_a.pr_officer, department=cast_a.department
        )
    assert change.state == ChangeState.APPLIED  # not an approver: at once
    assert callbacks
    credentials.user_tell(change_id=change.pk)
    credentials.user_tell(change_id=change.pk)
    assert EnrolmentLink.objects.filter(change=change).count() == 1
    assert sum("/account/enrol/" in m.body for m in mailoutbox) == 1


@pytest.mark.django_db
def test_an_expired_link_is_refused_and_audited(cast_a, mailoutbox, client) -> None:
    change = credentials.credentials_reset_request(
        actor=cast_a.system_admin, user=cast_a.pr_officer, department=cast_a.department
    )
    credentials.user_tell(change_id=change.pk)
    EnrolmentLink.objects.filter(change=change).update(expires_at=timezone.now())
    path = "/account/" + link_from(mailoutbox)
    assert client.post(path, {"new_password1": "x", "new_password2": "x"}).status_code == 410
    assert AuditEvent.objects.filter(action=AuditAction.ENROLMENT_LINK_REFUSED).exists()
    assert not User.objects.get(pk=cast_a.pr_officer.pk).has_usable_password()


# --- cooling-off ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_reset_approver_waits_out_the_cooling_off_period(cast_a, second_admin, settings) -> None:
    add_recipients(cast_a.department, 3)
    notice = submitted_notice(
        cast_a.pr_officer, cast_a.department, **targeted_fields(everyone_segment(cast_a.department))
    )
    change = credentials.credentials_reset_request(
        actor=cast_a.system_admin, user=cast_a.supervisor, department=cast_a.department
    )
    credentials.privileged_change_approve(actor=second_admin, change=change)
    supervisor = User.objects.get(pk=cast_a.supervisor.pk)
    supervisor.set_password(NEW_PASSWORD)  # as through the link, then enrolled again
    supervisor.save()
    give_authenticator(supervisor)
    with audit_context(AuditContext(otp_verified=True)), pytest.raises(ApprovalRefused) as caught:
        approval.notice_approve(actor=supervisor, notice=notice, version_hash=notice.version_hash)
    assert caught.value.code == "cooling_off"
    response = verified_client_for(supervisor).post(
        reverse("notices:api-approve", args=[notice.pk]),
        json.dumps({"version_hash": notice.version_hash}),
        "application/json",
    )
    assert response.status_code == 403
    assert response.json()["code"] == "cooling_off"
    assert (
        AuditEvent.objects.filter(
            action="notices.approval_refused", data__code="cooling_off"
        ).count()
        == 2
    )
    PrivilegedChange.objects.filter(pk=change.pk).update(
        decided_at=timezone.now() - timedelta(hours=settings.ACCOUNTS_APPROVER_COOLING_OFF_HOURS)
    )
    with audit_context(AuditContext(otp_verified=True)):
        approved = approval.notice_approve(
            actor=supervisor, notice=notice, version_hash=notice.version_hash
        )
    assert approved.status == Status.APPROVED


# --- approving roles need a second system administrator ---------------------------------------


@pytest.mark.django_db
def test_granting_an_approving_role_waits_for_a_second_admin(
    cast_a, second_admin, django_capture_on_commit_callbacks, mailoutbox
) -> None:
    user = User.objects.create_user("newcomer", email="newcomer@example.gov.hk", is_staff=True)
    client = verified_client_for(cast_a.system_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:accounts_membership_add"),
            {"user": user.pk, "department": cast_a.department.pk, "role": Role.SUPERVISOR},
        )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:accounts_privilegedchange_changelist")
    assert not Membership.objects.filter(user=user).exists()
    change = PrivilegedChange.objects.get(user=user)
    assert mailoutbox[-1].to == ["newcomer@example.gov.hk"]
    # Straight through the service, a person cannot skip the request.
    with pytest.raises(PermissionDenied):
        services.membership_grant(
            actor=cast_a.system_admin, user=user, department=cast_a.department, role=Role.SUPERVISOR
        )
    assert refusals("role_grant", "service").count() == 1
    with pytest.raises(PermissionDenied):
        credentials.privileged_change_approve(actor=cast_a.system_admin, change=change)
    with django_capture_on_commit_callbacks(execute=True):
        credentials.privileged_change_approve(actor=second_admin, change=change)
    membership = Membership.objects.get(user=user, role=Role.SUPERVISOR)
    assert membership.granted_by == cast_a.system_admin
    granted = AuditEvent.objects.filter(
        action=AuditAction.ROLE_GRANTED, target_id=str(membership.pk)
    )
    assert granted.get().data["requested_by"] == "wsd.sysadmin"
    assert "took effect" in mailoutbox[-1].body


@pytest.mark.django_db
def test_a_refused_request_grants_nothing_and_tells_the_person(
    cast_a, second_admin, django_capture_on_commit_callbacks, mailoutbox
) -> None:
    user = User.objects.create_user("newcomer", email="newcomer@example.gov.hk")
    change = credentials.role_grant_request(
        actor=cast_a.system_admin, user=user, department=cast_a.department, role=Role.SUPERVISOR
    )
    with django_capture_on_commit_callbacks(execute=True):
        credentials.privileged_change_refuse(actor=second_admin, change=change, reason="Not known")
    assert not Membership.objects.filter(user=user).exists()
    assert AuditEvent.objects.filter(action=AuditAction.CHANGE_REFUSED).count() == 1
    assert "refused" in mailoutbox[-1].body


# --- point 6: refused self-grants are on record, through the service and the admin ------------


@pytest.mark.django_db
def test_a_refused_self_grant_is_audited_through_service_and_admin(cast_a) -> None:
    with pytest.raises(PermissionDenied):
        services.membership_grant(
            actor=cast_a.system_admin,
            user=cast_a.system_admin,
            department=cast_a.department,
            role=Role.DEPARTMENT_ADMIN,
        )
    client = verified_client_for(cast_a.system_admin)
    response = client.post(
        reverse("admin:accounts_membership_add"),
        {
            "user": cast_a.system_admin.pk,
            "department": cast_a.department.pk,
            "role": "department_admin",
        },
    )
    assert response.status_code == 403
    assert not Membership.objects.filter(
        user=cast_a.system_admin, role=Role.DEPARTMENT_ADMIN
    ).exists()
    for path in ("service", "admin"):
        event = refusals("role_grant", path).get()
        assert event.actor == cast_a.system_admin
        if path == "admin":
            assert event.data["url"] == reverse("admin:accounts_membership_add")
        assert event.data["reason"] == "Nobody may grant a role to themselves."
