"""Department scope: the only module that calls django-guardian.

A role held in a department grants object permissions on that Department row. Everything a
department owns (notices, recipients, audit events) is checked through its department, so
each check is one indexed join on the direct foreign-key permission table.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import assign_perm, get_objects_for_user, remove_perm

from accounts.models import Department, Role
from common.types import Actor

VIEW_SPACE = "view_department_space"
COMPOSE_NOTICE = "compose_notice"
APPROVE_NOTICE = "approve_notice"
RECALL_NOTICE = "recall_notice"
VIEW_NOTICES = "view_notices"
MANAGE_AUDIENCE = "manage_audience"
VIEW_AUDIENCE = "view_audience"
VIEW_CONTACT_DETAILS = "view_contact_details"
VIEW_AUDIT = "view_audit"
EXPORT_AUDIT = "export_audit"
ADMINISTER_DEPARTMENT = "administer_department"

# Least privilege, straight from the product brief's role table.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.PR_OFFICER: frozenset({VIEW_SPACE, COMPOSE_NOTICE, VIEW_NOTICES, VIEW_AUDIENCE}),
    Role.SUPERVISOR: frozenset(
        {VIEW_SPACE, APPROVE_NOTICE, RECALL_NOTICE, VIEW_NOTICES, VIEW_AUDIENCE}
    ),
    Role.DEPARTMENT_ADMIN: frozenset(
        {VIEW_SPACE, MANAGE_AUDIENCE, VIEW_AUDIENCE, VIEW_CONTACT_DETAILS}
    ),
    Role.AUDITOR: frozenset({VIEW_SPACE, VIEW_NOTICES, VIEW_AUDIENCE, VIEW_AUDIT, EXPORT_AUDIT}),
    # A system administrator reads their own department's trail but never composes or approves.
    Role.SYSTEM_ADMIN: frozenset({VIEW_SPACE, ADMINISTER_DEPARTMENT, VIEW_AUDIT}),
}

ALL_DEPARTMENT_PERMISSIONS: frozenset[str] = frozenset().union(*ROLE_PERMISSIONS.values())

User = AbstractBaseUser | AnonymousUser


def _qualified(codename: str) -> str:
    return f"accounts.{codename}"


def departments_with_perm(user: User, codename: str) -> QuerySet[Department]:
    """Departments where `user` holds `codename` through a role.

    Model-level grants and superuser status are ignored on purpose: either would open every
    department at once.
    """
    if not user.is_authenticated or not user.is_active:
        return Department.objects.none()
    return get_objects_for_user(
        user,
        _qualified(codename),
        klass=Department.objects.filter(is_active=True),
        accept_global_perms=False,
        with_superuser=False,
        use_groups=False,
    )


def has_department_perm(user: Actor, codename: str, department: Department) -> bool:
    """Whether `user` holds `codename` in `department`; never the system actor (None)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if not department.is_active:
        return False
    checker = ObjectPermissionChecker(user)
    return bool(codename in checker.get_user_perms(department))


def require_department_perm(user: Actor, codename: str, department: Department) -> None:
    """Raise PermissionDenied unless `user` holds `codename` in `department`."""
    if not has_department_perm(user, codename, department):
        raise PermissionDenied(f"Missing permission {codename} for department {department.code}.")


def grant_role_permissions(user: AbstractBaseUser, role: str, department: Department) -> None:
    for codename in sorted(ROLE_PERMISSIONS[role]):
        assign_perm(_qualified(codename), user, department)


def sync_role_permissions(user: AbstractBaseUser, department: Department, roles: set[str]) -> None:
    """Make `user`'s object permissions on `department` exactly those of `roles`."""
    wanted: set[str] = set().union(*(ROLE_PERMISSIONS[r] for r in roles)) if roles else set()
    held = set(ObjectPermissionChecker(user).get_user_perms(department))
    for codename in sorted(held - wanted):
        remove_perm(_qualified(codename), user, department)
    for codename in sorted(wanted - held):
        assign_perm(_qualified(codename), user, department)
