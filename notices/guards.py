"""What every notices service starts with (who acts, may they, the notice locked) and how a
refusal is put on record.

A refusal is audited after the refused change has rolled back, so the notice stays as it was
while the attempt is on record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404

from accounts import permissions as perms
from accounts.models import Department
from audit.context import current_context
from audit.services import audit_record
from common.errors import ApplicationError
from common.types import Actor
from notices.audit_actions import NoticeOperation
from notices.models import Notice
from notices.selectors import notice_get_for_user


def acting_person(actor: Actor) -> Any:
    """The user to record as author or uploader; None for the system or an anonymous actor."""
    return actor if actor is not None and actor.is_authenticated else None


def require_perm(actor: Actor, codename: str, department: Department, *, system_ok: bool) -> None:
    """The actor holds `codename` in `department`; actor=None (the system) only if `system_ok`."""
    if actor is None:
        if system_ok:
            return
        raise PermissionDenied("The system cannot do this; a person must.")
    perms.require_department_perm(actor, codename, department)


def lock_notice(notice: Notice) -> Notice:
    """The notice re-read under a row lock, with its department and attachment."""
    return (
        Notice.objects.select_for_update(no_key=True, of=("self",))
        .select_related("department", "attachment")
        .get(pk=notice.pk)
    )


def audit_refusal(
    *,
    actor: Actor,
    notice: Notice,
    operation: NoticeOperation,
    code: str,
    message: str,
    action: str,
) -> None:
    """Record a refused operation on `notice`, with the notice's state as it stands now."""
    current = (
        Notice.objects.filter(pk=notice.pk).values("version", "version_hash", "status").first()
    )
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=action,
            target=notice,
            department=notice.department,
            data={
                "operation": operation,
                "code": code,
                "reason": message,
                # The page, admin page or API endpoint the attempt came by ("service" outside
                # a request: a task, a command, a shell).
                "path": current_context().path or "service",
                "version": current["version"] if current else notice.version,
                "version_hash": current["version_hash"] if current else notice.version_hash,
                "status": current["status"] if current else notice.status,
            },
        )


def run_auditing_refusal(
    operation: NoticeOperation,
    actor: Actor,
    notice: Notice,
    action: str,
    run: Callable[[], Notice],
) -> Notice:
    """Run `run`; if it refuses, record the refusal once the refused change has rolled back."""
    try:
        return run()
    except (PermissionDenied, ApplicationError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        code = getattr(exc, "code", None) or "permission_denied"
        audit_refusal(
            actor=actor,
            notice=notice,
            operation=operation,
            code=str(code),
            message=str(message),
            action=action,
        )
        raise


def notice_get_visible(
    *, actor: Actor, pk: int, operation: NoticeOperation, code: str, message: str, action: str
) -> Notice:
    """The notice `pk` as `actor` may read it. One hidden from them answers Http404 like a
    missing one, and the attempt is still recorded (`action`, `code`) in that notice's trail."""
    try:
        return notice_get_for_user(user=actor if actor is not None else AnonymousUser(), pk=pk)
    except Http404:
        hidden = Notice.objects.select_related("department").filter(pk=pk).first()
        if hidden is not None:
            audit_refusal(
                actor=actor,
                notice=hidden,
                operation=operation,
                code=code,
                message=message,
                action=action,
            )
        raise
