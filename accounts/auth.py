"""The login flow: password (throttled by axes), then a TOTP or backup code (throttled by django-otp)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.contrib.auth import login as auth_login
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils import timezone
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import BackupCodeDevice, Department
from audit.actions import AuditAction
from audit.services import audit_record

LOGIN_AT_SESSION_KEY = "portal_login_at"


def record_login_failure(action: str, username: str, data: dict[str, str]) -> None:
    """Audit a failed or locked-out login in the trail of each department the username belongs
    to (so its auditors see it), or once with no department for an unknown username."""
    username = username[:150]
    user = User.objects.filter(username=username).first()
    departments: list[Department | None] = (
        list(Department.objects.filter(memberships__user=user).distinct().order_by("pk"))
        if user is not None
        else []
    )
    for department in departments or [None]:
        audit_record(
            actor=None,
            action=action,
            actor_label=f"unauthenticated ({username})",
            # Nobody was identified (a wrong password proves nothing about who typed it): no
            # target, only the department whose auditors watch that username.
            department=department,
            data={"username": username, **data},
        )


def password_login(request: HttpRequest, *, username: str, password: str) -> User | None:
    """Check the password and start a not-yet-verified session. Audits success and failure."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        # A lockout is audited by the axes hook in accounts.auth_events; this is the plain failure.
        if not getattr(request, "axes_locked_out", False):
            record_login_failure(AuditAction.LOGIN_FAILED, username, {})
        return None
    auth_login(request, user)
    request.session[LOGIN_AT_SESSION_KEY] = timezone.now().timestamp()
    audit_record(actor=user, action=AuditAction.LOGGED_IN, target=user, data={"step": "password"})
    return user if isinstance(user, User) else None


class OtpOutcome(enum.Enum):
    VERIFIED = "verified"
    WRONG = "wrong"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class OtpResult:
    outcome: OtpOutcome
    wait_seconds: int = 0


def has_authenticator(user: User) -> bool:
    return bool(TOTPDevice.objects.filter(user=user, confirmed=True).exists())


def _wait_seconds(device: TOTPDevice | BackupCodeDevice) -> int:
    allowed, details = device.verify_is_allowed()
    if allowed or not details or not details.get("locked_until"):
        return 0
    return max(1, int((details["locked_until"] - timezone.now()).total_seconds()) + 1)


def otp_verify(request: HttpRequest, *, user: User, token: str, backup: bool) -> OtpResult:
    """Verify against exactly one device the user chose: TOTP codes never wear down backup codes."""
    device: TOTPDevice | BackupCodeDevice | None
    if backup:
        device = BackupCodeDevice.objects.filter(user=user, confirmed=True).first()
    else:
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        return OtpResult(OtpOutcome.WRONG)
    wait = _wait_seconds(device)
    if wait:
        return OtpResult(OtpOutcome.THROTTLED, wait)
    if device.verify_token(token.strip().replace(" ", "")):
        otp_login(request, device)
        action = AuditAction.BACKUP_CODE_USED if backup else AuditAction.OTP_VERIFIED
        audit_record(actor=user, action=action, target=user)
        return OtpResult(OtpOutcome.VERIFIED)
    audit_record(actor=user, action=AuditAction.OTP_FAILED, target=user, data={"backup": backup})
    device.refresh_from_db()
    wait = _wait_seconds(device)
    return OtpResult(OtpOutcome.THROTTLED, wait) if wait else OtpResult(OtpOutcome.WRONG)


def mark_enrolled_session(request: HttpRequest, device: TOTPDevice) -> None:
    otp_login(request, device)
