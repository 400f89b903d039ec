"""The registered set of audit action codes: `<app>.<past participle>`."""

from __future__ import annotations

from django.db import models


class AuditAction(models.TextChoices):
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
    DEPARTMENT_CREATED = "accounts.department_created", "Department created"
    DEPARTMENT_UPDATED = "accounts.department_updated", "Department settings changed"
