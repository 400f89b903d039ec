"""Reads scoped to the user: another department's notice answers 404, like a missing one."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from accounts import permissions as perms
from accounts.models import Department
from notices.models import Notice, NoticeTemplate, Status

UserLike = AbstractBaseUser | AnonymousUser

# Roles that see a department's notices: PR officers, supervisors, auditors.
_SEE = (perms.VIEW_NOTICES, perms.COMPOSE_NOTICE, perms.APPROVE_NOTICE)


def notice_departments_for_user(*, user: UserLike) -> QuerySet[Department]:
    ids: set[int] = set()
    for codename in _SEE:
        ids |= set(perms.departments_with_perm(user, codename).values_list("pk", flat=True))
    return Department.objects.filter(pk__in=ids).order_by("code")


def notice_list_for_user(*, user: UserLike) -> QuerySet[Notice]:
    return (
        Notice.objects.filter(department__in=notice_departments_for_user(user=user))
        .select_related("department", "created_by")
        .order_by("-created_at")
    )


def notice_get_for_user(*, user: UserLike, pk: int) -> Notice:
    notice = notice_list_for_user(user=user).select_related("attachment").filter(pk=pk).first()
    if notice is None:
        raise Http404("No such notice.")
    return notice


def approval_inbox_for_user(*, user: UserLike) -> QuerySet[Notice]:
    """Notices waiting for approval in departments where the user approves, oldest first."""
    return (
        Notice.objects.filter(
            department__in=perms.departments_with_perm(user, perms.APPROVE_NOTICE),
            status=Status.SUBMITTED,
        )
        .select_related("department", "created_by")
        .order_by("submitted_at")
    )


def template_list_for_user(*, user: UserLike, department: Department) -> QuerySet[NoticeTemplate]:
    if not perms.has_department_perm(user, perms.COMPOSE_NOTICE, department):
        return NoticeTemplate.objects.none()
    return NoticeTemplate.objects.filter(department=department, is_active=True).order_by("name")


def template_get_for_user(*, user: UserLike, department: Department, pk: int) -> NoticeTemplate:
    template = template_list_for_user(user=user, department=department).filter(pk=pk).first()
    if template is None:
        raise Http404("No such template.")
    return template
