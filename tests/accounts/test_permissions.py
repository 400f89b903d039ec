"""Exhaustive checks of the department permission functions: allowed, denied, anonymous,
other department, inactive, revoked, and superusers (who get nothing through departments)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied

from accounts import permissions as perms
from accounts import services
from accounts.models import Membership, Role

WRITE_PERMS = {
    perms.COMPOSE_NOTICE,
    perms.APPROVE_NOTICE,
    perms.RECALL_NOTICE,
    perms.MANAGE_AUDIENCE,
    perms.ADMINISTER_DEPARTMENT,
}


@pytest.mark.django_db
@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("codename", sorted(perms.ALL_DEPARTMENT_PERMISSIONS))
def test_each_role_holds_exactly_its_permissions_in_its_own_department_only(
    cast_a, cast_b, role, codename
) -> None:
    user = cast_a.by_role(role) if role != Role.SUPERVISOR else cast_a.supervisor
    expected = codename in perms.ROLE_PERMISSIONS[role]
    assert perms.has_department_perm(user, codename, cast_a.department) is expected
    assert perms.has_department_perm(user, codename, cast_b.department) is False
    assert (cast_a.department in perms.departments_with_perm(user, codename)) is expected
    assert cast_b.department not in perms.departments_with_perm(user, codename)


def test_system_administrator_cannot_compose_or_approve() -> None:
    granted = perms.ROLE_PERMISSIONS[Role.SYSTEM_ADMIN]
    assert perms.COMPOSE_NOTICE not in granted
    assert perms.APPROVE_NOTICE not in granted
    assert perms.RECALL_NOTICE not in granted


def test_auditor_cannot_change_anything() -> None:
    assert not (perms.ROLE_PERMISSIONS[Role.AUDITOR] & WRITE_PERMS)


def test_pr_officer_never_approves_nor_sees_phone_numbers() -> None:
    granted = perms.ROLE_PERMISSIONS[Role.PR_OFFICER]
    assert perms.APPROVE_NOTICE not in granted
    assert perms.VIEW_CONTACT_DETAILS not in granted


def test_department_admin_neither_composes_nor_approves() -> None:
    granted = perms.ROLE_PERMISSIONS[Role.DEPARTMENT_ADMIN]
    assert perms.COMPOSE_NOTICE not in granted
    assert perms.APPROVE_NOTICE not in granted


@pytest.mark.django_db
def test_anonymous_users_hold_nothing(cast_a) -> None:
    anonymous = AnonymousUser()
    assert perms.has_department_perm(anonymous, perms.VIEW_SPACE, cast_a.department) is False
    assert not perms.departments_with_perm(anonymous, perms.VIEW_SPACE).exists()
    with pytest.raises(PermissionDenied):
        perms.require_department_perm(anonymous, perms.VIEW_SPACE, cast_a.department)


@pytest.mark.django_db
def test_inactive_users_and_departments_grant_nothing(cast_a) -> None:
    cast_a.supervisor.is_active = False
    cast_a.supervisor.save()
    assert (
        perms.has_department_perm(cast_a.supervisor, perms.APPROVE_NOTICE, cast_a.department)
        is False
    )
    cast_a.department.is_active = False
    cast_a.department.save()
    assert (
        perms.has_department_perm(cast_a.pr_officer, perms.COMPOSE_NOTICE, cast_a.department)
        is False
    )
    assert not perms.departments_with_perm(cast_a.pr_officer, perms.COMPOSE_NOTICE).exists()


@pytest.mark.django_db
def test_a_revoked_role_takes_its_permissions_with_it(cast_a) -> None:
    membership = Membership.objects.get(user=cast_a.supervisor, role=Role.SUPERVISOR)
    services.membership_revoke(actor=cast_a.system_admin, membership=membership)
    assert (
        perms.has_department_perm(cast_a.supervisor, perms.APPROVE_NOTICE, cast_a.department)
        is False
    )
    assert (
        perms.has_department_perm(cast_a.supervisor, perms.VIEW_SPACE, cast_a.department) is False
    )


@pytest.mark.django_db
def test_revoking_one_role_keeps_the_permissions_of_another(cast_a) -> None:
    services.membership_grant(
        actor=None,  # the system: a person's grant of an approving role waits for a second admin
        user=cast_a.department_admin,
        department=cast_a.department,
        role=Role.SUPERVISOR,
    )
    membership = Membership.objects.get(user=cast_a.department_admin, role=Role.SUPERVISOR)
    services.membership_revoke(actor=cast_a.system_admin, membership=membership)
    assert perms.has_department_perm(
        cast_a.department_admin, perms.MANAGE_AUDIENCE, cast_a.department
    )
    assert perms.has_department_perm(cast_a.department_admin, perms.VIEW_SPACE, cast_a.department)
    assert not perms.has_department_perm(
        cast_a.department_admin, perms.APPROVE_NOTICE, cast_a.department
    )


@pytest.mark.django_db
def test_superusers_and_model_level_grants_open_no_department(cast_a) -> None:
    root = User.objects.create_superuser("root", "root@example.gov.hk", "x" * 20)
    assert perms.has_department_perm(root, perms.APPROVE_NOTICE, cast_a.department) is False
    assert not perms.departments_with_perm(root, perms.APPROVE_NOTICE).exists()
