"""accounts.services: permission, validation, audit row, and separation of duties."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from accounts import services
from accounts.models import BackupCodeDevice, Membership, Role
from accounts.secrets import resolve_secret_ref
from audit.actions import AuditAction
from audit.models import AuditEvent
from common.errors import ApplicationError
from common.testing.cast import give_authenticator


def last_event(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).order_by("-id").first()


@pytest.mark.django_db
def test_granting_a_role_is_audited_with_actor_and_target(cast_a) -> None:
    user = User.objects.create_user("newcomer")
    membership = services.membership_grant(
        actor=cast_a.system_admin, user=user, department=cast_a.department, role=Role.PR_OFFICER
    )
    event = last_event(AuditAction.ROLE_GRANTED)
    assert event.actor == cast_a.system_admin
    assert event.target_type == "accounts.Membership"
    assert event.target_id == str(membership.pk)
    assert event.department == cast_a.department
    assert event.data == {"user": "newcomer", "role": "pr_officer", "department": "WSD"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role", [Role.PR_OFFICER, Role.SUPERVISOR, Role.DEPARTMENT_ADMIN, Role.AUDITOR]
)
def test_only_system_administrators_grant_roles(cast_a, role) -> None:
    user = User.objects.create_user("newcomer")
    with pytest.raises(PermissionDenied):
        services.membership_grant(
            actor=cast_a.by_role(role),
            user=user,
            department=cast_a.department,
            role=Role.SUPERVISOR,
        )
    assert not Membership.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_a_system_administrator_cannot_grant_in_another_department(cast_a, cast_b) -> None:
    user = User.objects.create_user("newcomer")
    with pytest.raises(PermissionDenied):
        services.membership_grant(
            actor=cast_a.system_admin, user=user, department=cast_b.department, role=Role.PR_OFFICER
        )


@pytest.mark.django_db
def test_nobody_grants_a_role_to_themselves(cast_a) -> None:
    with pytest.raises(PermissionDenied):
        services.membership_grant(
            actor=cast_a.system_admin,
            user=cast_a.system_admin,
            department=cast_a.department,
            role=Role.SUPERVISOR,
        )


@pytest.mark.django_db
def test_conflicting_roles_are_refused(cast_a) -> None:
    with pytest.raises(ApplicationError, match="cannot be combined"):
        services.membership_grant(
            actor=cast_a.system_admin,
            user=cast_a.auditor,
            department=cast_a.department,
            role=Role.SUPERVISOR,
        )
    other_admin = services.staff_create(
        actor=None,
        username="second.sysadmin",
        full_name="Second Admin",
        email="s@example.gov.hk",
        department=cast_a.department,
        role=Role.SYSTEM_ADMIN,
    )
    with pytest.raises(ApplicationError, match="cannot be combined"):
        services.membership_grant(
            actor=cast_a.system_admin,
            user=other_admin,
            department=cast_a.department,
            role=Role.PR_OFFICER,
        )


@pytest.mark.django_db
def test_revoking_is_audited_before_the_row_goes(cast_a) -> None:
    membership = Membership.objects.get(user=cast_a.pr_officer)
    services.membership_revoke(actor=cast_a.system_admin, membership=membership)
    event = last_event(AuditAction.ROLE_REVOKED)
    assert event.actor == cast_a.system_admin
    assert event.target_id == str(membership.pk)
    assert not Membership.objects.filter(pk=membership.pk).exists()


@pytest.mark.django_db
def test_department_update_records_before_and_after(cast_a) -> None:
    services.department_update(
        actor=cast_a.system_admin, department=cast_a.department, changes={"dingtalk_agent_id": 9999}
    )
    event = last_event(AuditAction.DEPARTMENT_UPDATED)
    assert event.actor == cast_a.system_admin
    assert event.data == {
        "before": {"dingtalk_agent_id": 3003},
        "after": {"dingtalk_agent_id": 9999},
    }


@pytest.mark.django_db
def test_department_update_refuses_other_roles_and_unknown_fields(cast_a) -> None:
    with pytest.raises(PermissionDenied):
        services.department_update(
            actor=cast_a.supervisor, department=cast_a.department, changes={"name_en": "x"}
        )
    with pytest.raises(ApplicationError):
        services.department_update(
            actor=cast_a.system_admin, department=cast_a.department, changes={"is_active": False}
        )
    with pytest.raises(ValidationError):
        services.department_update(
            actor=cast_a.system_admin,
            department=cast_a.department,
            changes={"dingtalk_secret_ref": "hunter2"},
        )
    assert not AuditEvent.objects.filter(action=AuditAction.DEPARTMENT_UPDATED).exists()


@pytest.mark.django_db
def test_a_rolled_back_change_leaves_no_event(cast_a) -> None:
    before = AuditEvent.objects.count()

    def change_then_fail() -> None:
        with transaction.atomic():
            services.department_update(
                actor=cast_a.system_admin,
                department=cast_a.department,
                changes={"name_en": "Temporary"},
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert AuditEvent.objects.count() == before
    cast_a.department.refresh_from_db()
    assert cast_a.department.name_en == "Water Supplies Department"


@pytest.mark.django_db
def test_only_the_platform_superuser_creates_departments(cast_a) -> None:
    with pytest.raises(PermissionDenied):
        services.department_create(
            actor=cast_a.system_admin, code="TD", name_en="Transport Department", name_zh="運輸署"
        )
    root = User.objects.create_superuser("root", "root@example.gov.hk", "x" * 20)
    department = services.department_create(
        actor=root, code="TD", name_en="Transport Department", name_zh="運輸署"
    )
    assert last_event(AuditAction.DEPARTMENT_CREATED).target_id == str(department.pk)


@pytest.mark.django_db
def test_credentials_reset_removes_devices_and_is_audited(cast_a, cast_b) -> None:
    from accounts.credentials import credentials_reset_request

    give_authenticator(cast_a.pr_officer)
    services.backup_codes_issue(user=cast_a.pr_officer)
    with pytest.raises(PermissionDenied):
        credentials_reset_request(
            actor=cast_b.system_admin, user=cast_a.pr_officer, department=cast_a.department
        )
    credentials_reset_request(
        actor=cast_a.system_admin, user=cast_a.pr_officer, department=cast_a.department
    )
    assert not cast_a.pr_officer.totpdevice_set.exists()
    assert not BackupCodeDevice.objects.filter(user=cast_a.pr_officer).exists()
    assert last_event(AuditAction.CREDENTIALS_RESET).actor == cast_a.system_admin


@pytest.mark.django_db
def test_staff_create_refuses_a_taken_username(cast_a) -> None:
    with pytest.raises(ApplicationError, match="taken"):
        services.staff_create(
            actor=cast_a.system_admin,
            username="WSD.OFFICER",
            full_name="Dup",
            email="d@example.gov.hk",
            department=cast_a.department,
            role=Role.PR_OFFICER,
        )


def test_secret_references_resolve_from_env_and_file_without_leaking(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DINGTALK_SECRET_TEST", "s3cret-value")
    assert resolve_secret_ref("env:DINGTALK_SECRET_TEST") == "s3cret-value"
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret\n")
    assert resolve_secret_ref(f"file:{secret_file}") == "file-secret"
    with pytest.raises(ApplicationError) as missing:
        resolve_secret_ref("env:DINGTALK_SECRET_ABSENT")
    assert "DINGTALK_SECRET_ABSENT" in missing.value.message
    with pytest.raises(ApplicationError):
        resolve_secret_ref("")
