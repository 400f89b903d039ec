"""Reads scoped to the user: nothing of another department is returned, or admitted to exist."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db.models import QuerySet
from django.http import Http404

from accounts import permissions as perms
from accounts.models import Department, Membership


def department_list_for_user(
    *, user: AbstractBaseUser | AnonymousUser, perm: str = perms.VIEW_SPACE
) -> QuerySet[Department]:
    return perms.departments_with_perm(user, perm).order_by("code")


def department_get_for_user(
    *, user: AbstractBaseUser | AnonymousUser, code: str, perm: str = perms.VIEW_SPACE
) -> Department:
    """The department, or Http404 both when it does not exist and when the user may not see it."""
    department = department_list_for_user(user=user, perm=perm).filter(code=code).first()
    if department is None:
        raise Http404("No such department.")
    return department


def membership_list_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Membership]:
    """Staff memberships in departments the user administers, plus the user's own."""
    administered = perms.departments_with_perm(user, perms.ADMINISTER_DEPARTMENT)
    return Membership.objects.filter(department__in=administered).select_related(
        "user", "department", "granted_by"
    )


def staff_for_department(
    *, user: AbstractBaseUser | AnonymousUser, department: Department
) -> QuerySet[Membership]:
    """Who holds which role in a department the user can see."""
    department_get_for_user(user=user, code=department.code)
    return (
        Membership.objects.filter(department=department)
        .select_related("user")
        .order_by("role", "user__username")
    )


def user_list_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[User]:
    administered = perms.departments_with_perm(user, perms.ADMINISTER_DEPARTMENT)
    return User.objects.filter(memberships__department__in=administered).distinct()
