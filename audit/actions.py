"""Audit action codes: `<app>.<past participle>`, registered per app.

Each app declares a TextChoices of its own actions and registers it in AppConfig.ready(), so
audit imports no other app while audit_record still refuses an unregistered code.
"""

from __future__ import annotations

from django.db import models

_REGISTRY: dict[str, str] = {}


def register(actions: type[models.TextChoices]) -> None:
    for value, label in actions.choices:
        if not value.startswith(value.split(".")[0] + ".") or value.count(".") != 1:
            raise ValueError(f"Audit action {value!r} must look like '<app>.<past_participle>'.")
        _REGISTRY[value] = str(label)


def is_registered(action: str) -> bool:
    return action in _REGISTRY


def action_label(action: str) -> str:
    return _REGISTRY.get(action, action)


def registered_actions() -> dict[str, str]:
    return dict(sorted(_REGISTRY.items()))


class AuditAction(models.TextChoices):
    """Account and department events (the foundation's own actions)."""

    LOGGED_IN = "accounts.logged_in", "Logged in"
    LOGGED_OUT = "accounts.logged_out", "Logged out"
    LOGIN_FAILED = "accounts.login_failed", "Login failed"
    LOCKED_OUT = "accounts.locked_out", "Locked out after repeated failures"
    OTP_VERIFIED = "accounts.otp_verified", "Two-factor code accepted"
    OTP_FAILED = "accounts.otp_failed", "Two-factor code refused"
    TOTP_ENROLLED = "accounts.totp_enrolled", "Authenticator enrolled"
    TOTP_RESET = "accounts.totp_reset", "Authenticator reset"
    BACKUP_CODES_ISSUED = "accounts.backup_codes_issued", "Backup codes issued"
    BACKUP_CODE_USED = "accounts.backup_code_used", "Backup code used"
    STAFF_CREATED = "accounts.staff_created", "Staff account created"
    ROLE_GRANTED = "accounts.role_granted", "Role granted"
    ROLE_REVOKED = "accounts.role_revoked", "Role revoked"
    REFUSED = "accounts.refused", "Account change refused"
    PASSWORD_SET_REFUSED = "accounts.password_set_refused", "Setting another's password refused"
    CHANGE_REQUESTED = "accounts.change_requested", "Credential reset or approving role requested"
    CHANGE_APPROVED = "accounts.change_approved", "Second administrator approved the change"
    CHANGE_REFUSED = "accounts.change_refused", "Second administrator refused the change"
    CREDENTIALS_RESET = "accounts.credentials_reset", "Credentials reset; enrolment link sent"
    ENROLMENT_LINK_USED = "accounts.enrolment_link_used", "Enrolment link used"
    ENROLMENT_LINK_REFUSED = "accounts.enrolment_link_refused", "Enrolment link refused"
    DEPARTMENT_CREATED = "accounts.department_created", "Department created"
    DEPARTMENT_UPDATED = "accounts.department_updated", "Department settings changed"


register(AuditAction)


class AuditOwnAction(models.TextChoices):
    """The trail's own events, registered in AuditConfig.ready() like any other app's."""

    EXPORTED = "audit.exported", "Audit trail exported"
    PURGED = "audit.purged", "Events older than the retention period purged"
    ANCHORED = "audit.anchored", "Chain head anchored outside the database"
    VERIFIED = "audit.verified", "Hash chain verified"
