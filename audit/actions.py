"""Audit action codes: `<app>.<past participle>`, registered per app.

Each app declares a TextChoices of its own actions and registers it in AppConfig.ready(), so
audit imports no other app while audit_record still refuses an unregistered code.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from django_stubs_ext import StrOrPromise

# Labels stay lazy: each reader sees them in their own language.
_REGISTRY: dict[str, StrOrPromise] = {}


def register(actions: type[models.TextChoices]) -> None:
    for value, label in actions.choices:
        if not value.startswith(value.split(".")[0] + ".") or value.count(".") != 1:
            raise ValueError(f"Audit action {value!r} must look like '<app>.<past_participle>'.")
        _REGISTRY[value] = label


def is_registered(action: str) -> bool:
    return action in _REGISTRY


def action_label(action: str) -> str:
    return str(_REGISTRY.get(action, action))


def registered_actions() -> dict[str, str]:
    return {code: str(label) for code, label in sorted(_REGISTRY.items())}


class AuditAction(models.TextChoices):
    """Account and department events (the foundation's own actions)."""

    LOGGED_IN = "accounts.logged_in", _("Logged in")
    LOGGED_OUT = "accounts.logged_out", _("Logged out")
    LOGIN_FAILED = "accounts.login_failed", _("Login failed")
    LOCKED_OUT = "accounts.locked_out", _("Locked out after repeated failures")
    OTP_VERIFIED = "accounts.otp_verified", _("Two-factor code accepted")
    OTP_FAILED = "accounts.otp_failed", _("Two-factor code refused")
    TOTP_ENROLLED = "accounts.totp_enrolled", _("Authenticator enrolled")
    TOTP_RESET = "accounts.totp_reset", _("Authenticator reset")
    BACKUP_CODES_ISSUED = "accounts.backup_codes_issued", _("Backup codes issued")
    BACKUP_CODE_USED = "accounts.backup_code_used", _("Backup code used")
    STAFF_CREATED = "accounts.staff_created", _("Staff account created")
    ROLE_GRANTED = "accounts.role_granted", _("Role granted")
    ROLE_REVOKED = "accounts.role_revoked", _("Role revoked")
    REFUSED = "accounts.refused", _("Account change refused")
    PASSWORD_SET_REFUSED = "accounts.password_set_refused", _("Setting another's password refused")
    CHANGE_REQUESTED = (
        "accounts.change_requested",
        _("Credential reset or approving role requested"),
    )
    CHANGE_APPROVED = "accounts.change_approved", _("Second administrator approved the change")
    CHANGE_REFUSED = "accounts.change_refused", _("Second administrator refused the change")
    CREDENTIALS_RESET = "accounts.credentials_reset", _("Credentials reset; enrolment link sent")
    ENROLMENT_LINK_USED = "accounts.enrolment_link_used", _("Enrolment link used")
    ENROLMENT_LINK_REFUSED = "accounts.enrolment_link_refused", _("Enrolment link refused")
    DEPARTMENT_CREATED = "accounts.department_created", _("Department created")
    DEPARTMENT_UPDATED = "accounts.department_updated", _("Department settings changed")


register(AuditAction)


class AuditOwnAction(models.TextChoices):
    """The trail's own events, registered in AuditConfig.ready() like any other app's."""

    EXPORTED = "audit.exported", _("Audit trail exported")
    PURGED = "audit.purged", _("Events older than the retention period purged")
    ANCHORED = "audit.anchored", _("Chain head anchored outside the database")
    VERIFIED = "audit.verified", _("Hash chain verified")
