"""Credentials and approving roles under the same four-eyes rule as sends.

- Nobody sets another person's password or sees their authenticator. A reset removes the
  password, the authenticator and the backup codes, and sends the person a one-time enrolment
  link of their own (DingTalk work notification to their account, else e-mail) that expires in
  hours (ACCOUNTS_ENROLMENT_LINK_HOURS): with it they choose a password and enrol again.
- Resetting an approver's credentials and granting an approving role are requests: a second
  system administrator (not the requester, not the person concerned) approves them before they
  take effect. Both steps are audited and the person is told.
- An approver whose credentials were reset may not approve for a cooling-off period
  (ACCOUNTS_APPROVER_COOLING_OFF_HOURS), checked by notices.approval.

Every refusal is audited (accounts.refused) with the path it came by, after the refused change
rolled back.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import enqueue
from accounts import permissions as perms
from accounts.channel import client_for_department
from accounts.models import (
    BackupCodeDevice,
    ChangeKind,
    ChangeState,
    Department,
    EnrolmentLink,
    Membership,
    PrivilegedChange,
    Role,
)
from accounts.services import APPROVING_ROLES, membership_grant, role_grant_pending
from audit.actions import AuditAction
from audit.context import current_context
from audit.services import audit_record
from common.errors import ApplicationError
from common.i18n import in_both_languages
from common.urls import portal_url
from dingtalk import messages as dt
from dingtalk.errors import DingTalkError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def audit_refused(
    *, actor: User | None, path: str, operation: str, code: str, reason: str, target: object
) -> None:
    """Record a refused account operation (after the refused change rolled back)."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=AuditAction.REFUSED,
            target=target if hasattr(target, "_meta") else None,  # type: ignore[arg-type]
            target_label=None if hasattr(target, "_meta") else str(target)[:200],
            data={
                "path": path,
                "url": current_context().path,
                "operation": operation,
                "code": code,
                "reason": reason,
            },
        )


def run_refusing(
    run: Callable[[], T], *, actor: User | None, path: str, operation: str, target: object
) -> T:
    try:
        return run()
    except (PermissionDenied, ApplicationError) as exc:
        audit_refused(
            actor=actor,
            path=path,
            operation=operation,
            code=str(getattr(exc, "code", None) or "permission_denied"),
            reason=str(getattr(exc, "message", None) or exc),
            target=target,
        )
        raise


def is_approver(user: User) -> bool:
    return Membership.objects.filter(user=user, role__in=APPROVING_ROLES).exists()


def cooling_off_until(user: Any) -> datetime | None:
    """When the user may approve again after a credential reset; None if they may now."""
    hours = int(settings.ACCOUNTS_APPROVER_COOLING_OFF_HOURS)
    last = (
        PrivilegedChange.objects.filter(
            user=user, kind=ChangeKind.CREDENTIAL_RESET, state=ChangeState.APPLIED
        )
        .order_by("-decided_at")
        .values_list("decided_at", flat=True)
        .first()
    )
    if last is None:
        return None
    until = last + timedelta(hours=hours)
    return until if until > timezone.now() else None


def _require_admin_of(actor: User, user: User, department: Department) -> None:
    perms.require_department_perm(actor, perms.ADMINISTER_DEPARTMENT, department)
    if not Membership.objects.filter(user=user, department=department).exists():
        raise PermissionDenied("That user holds no role in this department.")
    if actor.pk == user.pk:
        raise PermissionDenied("Ask another administrator to reset your own credentials.")


def _requested(change: PrivilegedChange, actor: User | None) -> None:
    audit_record(
        actor=actor,
        action=AuditAction.CHANGE_REQUESTED,
        target=change.user,
        department=change.department,
        data={
            "change": change.pk,
            "kind": change.kind,
            "role": change.role,
            "state": change.state,
            "user": change.user.get_username(),
        },
    )
    change_id = change.pk
    transaction.on_commit(lambda: enqueue.tell_user(change_id))


def credentials_reset_request(
    *, actor: User, user: User, department: Department, path: str = "service"
) -> PrivilegedChange:
    """Ask for `user`'s credentials to be reset. Permission: administer_department where the user
    holds a role; never one's own. An approver's reset waits for a second system administrator;
    anyone else's takes effect at once. Audit: accounts.change_requested (+ the reset)."""

    @transaction.atomic
    def run() -> PrivilegedChange:
        _require_admin_of(actor, user, department)
        change = PrivilegedChange.objects.create(
            kind=ChangeKind.CREDENTIAL_RESET, user=user, department=department, requested_by=actor
        )
        _requested(change, actor)
        if not is_approver(user):
            _apply(change, None)
        return change

    return run_refusing(run, actor=actor, path=path, operation="credential_reset", target=user)


def role_grant_request(
    *,
    actor: User | None,
    user: User,
    department: Department,
    role: str,
    dingtalk_user_id: str = "",
    path: str = "service",
) -> Membership | PrivilegedChange:
    """Grant a role: at once, unless it is an approving role granted by a person, which waits
    for a second system administrator (the PrivilegedChange returned). Refusals audited."""
    if actor is None or role not in APPROVING_ROLES:
        return membership_grant(
            actor=actor,
            user=user,
            department=department,
            role=role,
            dingtalk_user_id=dingtalk_user_id,
            path=path,
        )
    person = actor

    @transaction.atomic
    def run() -> PrivilegedChange:
        return role_grant_pending(person, user, department, role, dingtalk_user_id)

    return run_refusing(run, actor=actor, path=path, operation="role_grant", target=user)


def _check_second(actor: User, change: PrivilegedChange) -> None:
    if change.state != ChangeState.PENDING:
        raise ApplicationError(_("This request was already decided."), code="decided")
    perms.require_department_perm(actor, perms.ADMINISTER_DEPARTMENT, change.department)
    if not Membership.objects.filter(user=actor, role=Role.SYSTEM_ADMIN).exists():
        raise PermissionDenied("Only a system administrator may approve this.")
    if actor.pk == change.requested_by_id:
        raise PermissionDenied("A second system administrator must approve what you requested.")
    if actor.pk == change.user_id:
        raise PermissionDenied("Nobody may approve a change to their own credentials or roles.")


def privileged_change_approve(
    *, actor: User, change: PrivilegedChange, path: str = "service"
) -> PrivilegedChange:
    """The second system administrator's approval: the reset or grant takes effect.
    Audit: accounts.change_approved (+ accounts.credentials_reset or accounts.role_granted)."""

    @transaction.atomic
    def run() -> PrivilegedChange:
        locked = PrivilegedChange.objects.select_for_update().get(pk=change.pk)
        _check_second(actor, locked)
        audit_record(
            actor=actor,
            action=AuditAction.CHANGE_APPROVED,
            target=locked.user,
            department=locked.department,
            data={"change": locked.pk, "kind": locked.kind, "role": locked.role},
        )
        _apply(locked, actor)
        return locked

    return run_refusing(run, actor=actor, path=path, operation="change_approve", target=change.user)


def privileged_change_refuse(
    *, actor: User, change: PrivilegedChange, reason: str, path: str = "service"
) -> PrivilegedChange:
    """The second system administrator says no. Audit: accounts.change_refused; the user is told."""

    @transaction.atomic
    def run() -> PrivilegedChange:
        locked = PrivilegedChange.objects.select_for_update().get(pk=change.pk)
        _check_second(actor, locked)
        locked.state, locked.decided_by, locked.decided_at = (
            ChangeState.REFUSED,
            actor,
            timezone.now(),
        )
        locked.reason = reason[:300]
        locked.save(update_fields=["state", "decided_by", "decided_at", "reason"])
        audit_record(
            actor=actor,
            action=AuditAction.CHANGE_REFUSED,
            target=locked.user,
            department=locked.department,
            data={"change": locked.pk, "kind": locked.kind, "reason": locked.reason},
        )
        change_id = locked.pk
        transaction.on_commit(lambda: enqueue.tell_user(change_id))
        return locked

    return run_refusing(run, actor=actor, path=path, operation="change_refuse", target=change.user)


def _apply(change: PrivilegedChange, approver: User | None) -> None:
    """Make the change take effect (inside the caller's transaction)."""
    user = change.user
    if change.kind == ChangeKind.CREDENTIAL_RESET:
        TOTPDevice.objects.filter(user=user).delete()
        BackupCodeDevice.objects.filter(user=user).delete()
        user.set_unusable_password()
        user.save(update_fields=["password"])
        audit_record(
            actor=approver or change.requested_by,
            action=AuditAction.CREDENTIALS_RESET,
            target=user,
            department=change.department,
            data={
                "change": change.pk,
                "requested_by": change.requested_by.get_username() if change.requested_by else None,
                "approved_by": approver.get_username() if approver else None,
            },
        )
    else:
        membership_grant(
            actor=None,
            user=user,
            department=change.department,
            role=change.role,
            dingtalk_user_id=change.dingtalk_user_id,
            granted_by=change.requested_by,
        )
    change.state, change.decided_by, change.decided_at = (
        ChangeState.APPLIED,
        approver,
        timezone.now(),
    )
    change.save(update_fields=["state", "decided_by", "decided_at"])
    change_id = change.pk
    transaction.on_commit(lambda: enqueue.tell_user(change_id))


# --- telling the person, and their enrolment link ----------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _deliver(change: PrivilegedChange, subject: str, text: str) -> str:
    """DingTalk work notification to the person's own account in the department, else e-mail.
    Returns how it went ("dingtalk", "email" or "" when neither was possible)."""
    membership = (
        Membership.objects.filter(user=change.user, department=change.department)
        .exclude(dingtalk_user_id="")
        .first()
    )
    if membership is not None:
        try:
            client_for_department(change.department).send(
                dt.markdown(subject[: dt.MAX_MARKDOWN_TITLE_CHARS], text),
                userids=[membership.dingtalk_user_id],
            )
            return "dingtalk"
        except (DingTalkError, ApplicationError) as exc:
            logger.warning("DingTalk notice to %s failed (%s); e-mailing.", change.user_id, exc)
    if change.user.email:
        send_mail(
            subject=subject, message=text, from_email=None, recipient_list=[change.user.email]
        )
        return "email"
    return ""


def _message(change: PrivilegedChange) -> tuple[str, str]:
    """Subject and text, each in English then Traditional Chinese (the person's language is
    not known to the portal)."""

    def what() -> str:
        if change.kind == ChangeKind.CREDENTIAL_RESET:
            return _("a reset of your portal credentials")
        return _("the role %(role)s in %(department)s") % {
            "role": Role(change.role).label,
            "department": change.department.code,
        }

    def pending() -> str:
        who = change.requested_by.get_username() if change.requested_by else _("the system")
        return _(
            "%(who)s asked for %(what)s. A second system administrator must approve it. "
            "If you did not expect this, tell your security officer."
        ) % {"who": who, "what": what()}

    if change.state == ChangeState.PENDING:
        return in_both_languages(lambda: _("Portal: change requested"), " / "), in_both_languages(
            pending
        )
    if change.state == ChangeState.REFUSED:
        return (
            in_both_languages(lambda: _("Portal: change refused"), " / "),
            in_both_languages(
                lambda: _("The request for %(what)s was refused.") % {"what": what()}
            ),
        )
    return (
        in_both_languages(lambda: _("Portal: change applied"), " / "),
        in_both_languages(lambda: _("Done: %(what)s took effect.") % {"what": what()}),
    )


def user_tell(*, change_id: int) -> str:
    """Tell the person about the change to their account; once the reset applies, this carries
    their one-time enrolment link. Safe to run twice: a link already sent is not sent again."""
    change = (
        PrivilegedChange.objects.select_related("user", "department", "requested_by")
        .filter(pk=change_id)
        .first()
    )
    if change is None:
        return ""
    subject, text = _message(change)
    if change.kind == ChangeKind.CREDENTIAL_RESET and change.state == ChangeState.APPLIED:
        if EnrolmentLink.objects.filter(change=change, sent_at__isnull=False).exists():
            return ""
        token = secrets.token_urlsafe(32)
        hours = int(settings.ACCOUNTS_ENROLMENT_LINK_HOURS)
        link = EnrolmentLink.objects.create(
            user=change.user,
            change=change,
            token_hash=_token_hash(token),
            expires_at=timezone.now() + timedelta(hours=hours),
        )
        url = portal_url(reverse("accounts:enrolment-link", args=[token]))
        text += "\n\n" + in_both_languages(
            lambda: (
                _(
                    "Choose a new password and enrol your authenticator within %(hours)s hours, "
                    "once, with this link:"
                )
                % {"hours": hours}
            )
        )
        text += f"\n{url}"
        via = _deliver(change, subject, text)
        EnrolmentLink.objects.filter(pk=link.pk).update(sent_via=via, sent_at=timezone.now())
        # Only the link just sent is valid: an earlier one of the same reset is spent.
        EnrolmentLink.objects.filter(change=change, used_at__isnull=True).exclude(
            pk=link.pk
        ).update(used_at=timezone.now())
        return via
    return _deliver(change, subject, text)


def enrolment_link_get(*, token: str) -> EnrolmentLink | None:
    """The link, if it was sent, is unused and has not expired."""
    return (
        EnrolmentLink.objects.select_related("user")
        .filter(
            token_hash=_token_hash(token),
            sent_at__isnull=False,
            used_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .first()
    )


def enrolment_link_refused(*, token: str, path: str) -> None:
    """Record a link that was not valid (unknown, spent or expired). Audit:
    accounts.enrolment_link_refused, with the first characters of the token's hash only."""
    with transaction.atomic():
        audit_record(
            actor=None,
            action=AuditAction.ENROLMENT_LINK_REFUSED,
            target_label="enrolment link",
            data={"path": path, "token_hash": _token_hash(token)[:12]},
        )


def enrolment_link_use(*, token: str, password: str) -> User:
    """Set the person's own new password through their link (once). The authenticator is
    enrolled next, at the usual enrolment step. Audit: accounts.enrolment_link_used; a bad,
    spent or expired link accounts.enrolment_link_refused."""
    link = enrolment_link_get(token=token)
    if link is None:
        enrolment_link_refused(token=token, path="service")
        raise ApplicationError(_("This link is not valid: it was used, or it expired."))
    try:
        validate_password(password, link.user)
    except ValidationError as exc:
        raise ApplicationError(" ".join(exc.messages), field="new_password1") from None
    with transaction.atomic():
        spent = EnrolmentLink.objects.filter(pk=link.pk, used_at__isnull=True).update(
            used_at=timezone.now()
        )
        if spent != 1:
            raise ApplicationError(_("This link is not valid: it was used, or it expired."))
        user = link.user
        user.set_password(password)
        user.save(update_fields=["password"])
        audit_record(
            actor=user,
            action=AuditAction.ENROLMENT_LINK_USED,
            target=user,
            data={"link": link.pk},
        )
    return user
