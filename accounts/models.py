"""Departments, staff roles and second-factor devices."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device, ThrottlingMixin
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from common.i18n import in_reader_language


class Edition(models.TextChoices):
    STANDARD = "standard", _("Standard (5,000 metered calls a month)")
    PROFESSIONAL = "professional", _("Professional (200,000 metered calls a month)")


class Department(models.Model):
    code = models.CharField(
        max_length=12,
        unique=True,
        validators=[
            RegexValidator(r"^[A-Z][A-Z0-9]{1,11}$", _("Use 2-12 capital letters or digits."))
        ],
        help_text=_("Short code such as HKO or WSD."),
        verbose_name=_("code"),
    )
    name_en = models.CharField(_("name (English)"), max_length=200)
    name_zh = models.CharField(_("name (Traditional Chinese)"), max_length=100)
    dingtalk_agent_id = models.BigIntegerField(_("DingTalk agent id"), null=True, blank=True)
    dingtalk_app_key = models.CharField(_("DingTalk app key"), max_length=64, blank=True)
    dingtalk_secret_ref = models.CharField(
        _("DingTalk app secret reference"),
        max_length=255,
        blank=True,
        help_text=_(
            "Where the secret is kept: env:VARIABLE or file:/path. The secret itself is never stored."
        ),
        validators=[
            RegexValidator(r"^(env:[A-Z_][A-Z0-9_]*|file:\S+)?$", _("Use env:NAME or file:/path."))
        ],
    )
    dingtalk_edition = models.CharField(
        max_length=16,
        choices=Edition.choices,
        default=Edition.STANDARD,
        verbose_name=_("DingTalk edition"),
    )
    is_active = models.BooleanField(default=True, verbose_name=_("is active"))
    # How much larger (in percent) the audience counted at send time may be than the one
    # counted at the final approval before the send waits for a new approval.
    reach_growth_percent = models.PositiveSmallIntegerField(
        _("reach growth allowed before re-approval (%)"),
        default=10,
        validators=[MaxValueValidator(500)],
    )
    # Policy: a citywide (emergency) broadcast may go to every member of the DingTalk
    # organisation with to_all_user even though some of them opted out in the portal.
    broadcast_to_all_members = models.BooleanField(
        _("emergency broadcasts go to every member"),
        default=False,
        help_text=_(
            "When set, a citywide notice may be sent to every member of the DingTalk "
            "organisation, including people who opted out in the portal."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("department")
        verbose_name_plural = _("departments")
        ordering = ["code"]
        permissions = [
            ("view_department_space", "Can see the department's workspace"),
            ("compose_notice", "Can write and submit notices"),
            ("approve_notice", "Can approve or reject notices"),
            ("recall_notice", "Can recall sent notices"),
            ("view_notices", "Can see notices and their delivery"),
            ("manage_audience", "Can manage recipients, imports, segments and venues"),
            ("view_audience", "Can see segments and audience counts"),
            ("view_contact_details", "Can see recipients' full phone numbers"),
            ("view_audit", "Can read the audit trail"),
            ("export_audit", "Can export the audit trail and receipt reports"),
            ("administer_department", "Can manage staff, roles and department settings"),
        ]

    def __str__(self) -> str:
        return f"{self.code} · {self.display_name}"

    @property
    def display_name(self) -> str:
        """The name in the reader's language."""
        return in_reader_language(self.name_en, self.name_zh)


class DepartmentUserObjectPermission(UserObjectPermissionBase):
    """Guardian's direct foreign-key table: indexed joins instead of generic text keys."""

    content_object = models.ForeignKey(Department, on_delete=models.CASCADE)


class DepartmentGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Department, on_delete=models.CASCADE)


class Role(models.TextChoices):
    PR_OFFICER = "pr_officer", _("PR officer")
    SUPERVISOR = "supervisor", _("Supervisor")
    DEPARTMENT_ADMIN = "department_admin", _("Department admin")
    AUDITOR = "auditor", _("Auditor")
    SYSTEM_ADMIN = "system_admin", _("System administrator")


class Membership(models.Model):
    """A staff user holding one role in one department."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("user"),
    )
    department = models.ForeignKey(
        Department,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("department"),
    )
    role = models.CharField(max_length=32, choices=Role.choices, verbose_name=_("role"))
    # The person's user id in this department's DingTalk organisation: approvers are alerted there.
    dingtalk_user_id = models.CharField(
        max_length=64, blank=True, verbose_name=_("DingTalk user id")
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("granted by"),
    )
    granted_at = models.DateTimeField(auto_now_add=True, verbose_name=_("granted at"))

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        ordering = ["department__code", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "department", "role"], name="membership_unique_role"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.department.code} · {self.get_role_display()}"


def _hash_backup_code(salt: str, code: str) -> str:
    # Codes carry 50 random bits, so a salted SHA-256 resists offline guessing; a slow KDF
    # would only make each login try ten slow hashes.
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


class BackupCodeDevice(ThrottlingMixin, Device):  # type: ignore[misc]  # django-otp ships no type hints
    """One-time backup codes, stored only as salted hashes (django-otp's static device keeps plain text)."""

    CODE_COUNT: ClassVar[int] = 10
    CODE_ALPHABET: ClassVar[str] = "abcdefghjkmnpqrstuvwxyz23456789"

    def get_throttle_factor(self) -> int:
        return 1

    def issue_codes(self) -> list[str]:
        """Replace every code with a fresh set and return the plain codes (shown once)."""
        self.codes.all().delete()
        plain = [
            "".join(secrets.choice(self.CODE_ALPHABET) for _ in range(10))
            for _ in range(self.CODE_COUNT)
        ]
        BackupCode.objects.bulk_create(
            [
                BackupCode(
                    device=self,
                    salt=(salt := secrets.token_hex(8)),
                    code_hash=_hash_backup_code(salt, c),
                )
                for c in plain
            ]
        )
        return plain

    def verify_token(self, token: str) -> bool:
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        normalised = token.strip().lower().replace("-", "").replace(" ", "")
        for code in self.codes.all():
            if hmac.compare_digest(code.code_hash, _hash_backup_code(code.salt, normalised)):
                code.delete()
                self.throttle_reset()
                return True
        self.throttle_increment()
        return False


class BackupCode(models.Model):
    device = models.ForeignKey(BackupCodeDevice, on_delete=models.CASCADE, related_name="codes")
    salt = models.CharField(max_length=32)
    code_hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"backup code #{self.pk} of {self.device}"


class ChangeKind(models.TextChoices):
    CREDENTIAL_RESET = "credential_reset", _("Credential reset")
    ROLE_GRANT = "role_grant", _("Approving role granted")


class ChangeState(models.TextChoices):
    PENDING = "pending", _("Waiting for a second administrator")
    APPLIED = "applied", _("Applied")
    REFUSED = "refused", _("Refused")


class PrivilegedChange(models.Model):
    """A credential reset or an approving-role grant: one administrator asks, and for an approver
    (or an approving role) a second system administrator must approve before it takes effect.
    Written only by accounts.credentials."""

    kind = models.CharField(_("kind"), max_length=20, choices=ChangeKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="privileged_changes",
        verbose_name=_("user"),
    )
    department = models.ForeignKey(
        Department, on_delete=models.CASCADE, related_name="+", verbose_name=_("department")
    )
    role = models.CharField(_("role"), max_length=32, choices=Role.choices, blank=True)
    # For a role grant: the person's DingTalk user id in the department, as membership_grant takes.
    dingtalk_user_id = models.CharField(
        max_length=64, blank=True, verbose_name=_("DingTalk user id")
    )
    state = models.CharField(
        _("state"), max_length=12, choices=ChangeState.choices, default=ChangeState.PENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("requested by"),
    )
    requested_at = models.DateTimeField(auto_now_add=True, verbose_name=_("requested at"))
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("decided by"),
    )
    decided_at = models.DateTimeField(null=True, blank=True, verbose_name=_("decided at"))
    reason = models.CharField(_("reason"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("privileged change")
        verbose_name_plural = _("privileged changes")
        ordering = ["-requested_at"]
        indexes = [models.Index(fields=["user", "kind", "state"], name="privchange_user_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.user} ({self.get_state_display()})"


class EnrolmentLink(models.Model):
    """A one-time link that lets a person whose credentials were reset set a new password and
    enrol an authenticator; only the token's hash is stored, and it expires within hours."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrolment_links"
    )
    change = models.ForeignKey(
        PrivilegedChange, on_delete=models.CASCADE, related_name="enrolment_links"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    # Where it went ("dingtalk" or "email") and when; a link never sent is never valid.
    sent_via = models.CharField(max_length=12, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"enrolment link for {self.user} (until {self.expires_at:%Y-%m-%d %H:%M})"
