"""Back-office smoke tests: each admin page opens for the right role, and writes go through services."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Membership, Role
from audit.actions import AuditAction
from audit.models import AuditEvent
from common.testing.cast import give_authenticator, unverified_client_for, verified_client_for


@pytest.mark.django_db
def test_unverified_staff_get_no_admin_access(cast_a) -> None:
    client = unverified_client_for(cast_a.system_admin)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:verify"))


@pytest.mark.django_db
def test_admin_login_page_sends_people_to_the_portal_login(client) -> None:
    response = client.get(reverse("admin:login"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.django_db
def test_system_admin_pages_open(cast_a) -> None:
    client = verified_client_for(cast_a.system_admin)
    for url in (
        reverse("admin:index"),
        reverse("admin:accounts_department_changelist"),
        reverse("admin:accounts_department_change", args=[cast_a.department.pk]),
        reverse("admin:accounts_membership_changelist"),
        reverse("admin:accounts_membership_add"),
        reverse("admin:auth_user_changelist"),
        reverse("admin:auth_user_change", args=[cast_a.pr_officer.pk]),
    ):
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_department_change_in_admin_goes_through_the_service(cast_a) -> None:
    client = verified_client_for(cast_a.system_admin)
    response = client.post(
        reverse("admin:accounts_department_change", args=[cast_a.department.pk]),
        {
            "name_en": "Water Supplies Dept",
            "name_zh": "水務署",
            "dingtalk_agent_id": "3003",
            "dingtalk_app_key": "",
            "dingtalk_secret_ref": "",
            "dingtalk_edition": "standard",
            "reach_growth_percent": "10",
        },
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action=AuditAction.DEPARTMENT_UPDATED)
    assert event.actor == cast_a.system_admin


@pytest.mark.django_db
def test_granting_a_role_in_admin_goes_through_the_service(cast_a) -> None:
    from django.contrib.auth.models import User

    newcomer = User.objects.create_user("newcomer", is_staff=True)
    client = verified_client_for(cast_a.system_admin)
    response = client.post(
        reverse("admin:accounts_membership_add"),
        {"user": newcomer.pk, "department": cast_a.department.pk, "role": Role.PR_OFFICER},
    )
    assert response.status_code == 302
    assert Membership.objects.filter(user=newcomer, role=Role.PR_OFFICER).exists()
    assert AuditEvent.objects.filter(
        action=AuditAction.ROLE_GRANTED, actor=cast_a.system_admin
    ).exists()


@pytest.mark.django_db
def test_revoking_a_role_in_admin_goes_through_the_service(cast_a) -> None:
    membership = Membership.objects.get(user=cast_a.pr_officer)
    client = verified_client_for(cast_a.system_admin)
    response = client.post(
        reverse("admin:accounts_membership_delete", args=[membership.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(action=AuditAction.ROLE_REVOKED).exists()


@pytest.mark.django_db
def test_reset_credentials_action(cast_a) -> None:
    give_authenticator(cast_a.pr_officer)
    client = verified_client_for(cast_a.system_admin)
    response = client.post(
        reverse("admin:auth_user_changelist"),
        {"action": "reset_credentials", "_selected_action": [cast_a.pr_officer.pk]},
    )
    assert response.status_code == 302
    assert not cast_a.pr_officer.totpdevice_set.exists()
    assert AuditEvent.objects.filter(action=AuditAction.CREDENTIALS_RESET).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.PR_OFFICER, Role.SUPERVISOR, Role.DEPARTMENT_ADMIN])
def test_roles_without_account_duties_cannot_open_account_admin(cast_a, role) -> None:
    client = verified_client_for(cast_a.by_role(role))
    assert client.get(reverse("admin:accounts_membership_changelist")).status_code == 403
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403
