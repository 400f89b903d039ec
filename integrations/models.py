"""Integrations: signed callers, the Observatory warning feed, and what each trigger prepared.

No trigger sends anything: each one prepares a notice and submits it for the same human
approval as a notice written by staff.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from notices.models import Tier


class Integration(models.Model):
    """A department's machine caller of the webhook or CAP endpoint, holding one HMAC secret."""

    department = models.ForeignKey(
        "accounts.Department",
        on_delete=models.PROTECT,
        related_name="integrations",
        verbose_name=_("department"),
    )
    name = models.CharField(_("name"), max_length=100)
    # The path segment callers use: /api/triggers/<slug>/ and /api/cap/<slug>/.
    slug = models.SlugField(_("address"), max_length=60, unique=True)
    templates = models.ManyToManyField(
        "notices.NoticeTemplate",
        blank=True,
        related_name="integrations",
        verbose_name=_("templates it may use"),
    )
    # The template a CAP alert fills (its headline, description and instruction per language).
    cap_template = models.ForeignKey(
        "notices.NoticeTemplate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("template for CAP alerts"),
    )
    # Fernet token (see integrations.crypto); the plain secret is never stored.
    secret_encrypted = models.TextField(editable=False, verbose_name=_("secret encrypted"))
    secret_hint = models.CharField(max_length=12, editable=False, verbose_name=_("secret hint"))
    secret_rotated_at = models.DateTimeField(
        null=True, blank=True, editable=False, verbose_name=_("secret rotated at")
    )
    previous_secret_encrypted = models.TextField(
        blank=True, editable=False, verbose_name=_("previous secret encrypted")
    )
    previous_secret_valid_until = models.DateTimeField(
        null=True, blank=True, editable=False, verbose_name=_("previous secret valid until")
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        _("requests a minute at most"),
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(600)],
    )
    active = models.BooleanField(_("active"), default=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("integration")
        verbose_name_plural = _("integrations")
        ordering = ["department_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["department", "name"], name="integration_unique_name_per_department"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class SeenSignature(models.Model):
    """Replay protection: each accepted signature once; rows older than the window are purged."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="+")
    signature_digest = models.CharField(max_length=64)
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "signature_digest"], name="seensignature_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.integration_id} {self.signature_digest[:12]}"


class RateWindow(models.Model):
    """Requests counted per integration per minute, shared by every web worker."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)  # signed requests: what the limit counts
    refused = models.PositiveIntegerField(default=0)  # of those, refused for the limit
    # Requests whose signature failed: counted apart, so a stranger who knows the address
    # cannot use up the real caller's minute.
    unsigned = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "window_start"], name="ratewindow_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.integration_id} {self.window_start:%H:%M}: {self.count}"


class UnknownTrafficWindow(models.Model):
    """Requests to addresses no integration has, counted per source (client address) and window.

    Unauthenticated: nothing here is written to the audit trail one request at a time; each
    ended window becomes one summary event (integrations.services.strangers).
    """

    window_start = models.DateTimeField()
    source = models.CharField(max_length=64)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["window_start", "source"], name="unknowntraffic_unique")
        ]

    def __str__(self) -> str:
        return f"{self.window_start:%H:%M} {self.source}: {self.count}"


class TriggerSource(models.TextChoices):
    WEBHOOK = "webhook", _("Signed webhook")
    CAP = "cap", _("CAP 1.2 alert")
    OBSERVATORY = "observatory", _("Observatory warning")


class Trigger(models.Model):
    """One accepted trigger and the notice it prepared. The unique key makes triggers idempotent."""

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public id")
    )
    department = models.ForeignKey(
        "accounts.Department",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("department"),
    )
    integration = models.ForeignKey(
        Integration,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="triggers",
        verbose_name=_("integration"),
    )
    source = models.CharField(
        max_length=16, choices=TriggerSource.choices, verbose_name=_("source")
    )
    # Webhook: the caller's idempotency key. CAP: "sender identifier". Observatory: "code|issueTime|action".
    key = models.CharField(max_length=300, verbose_name=_("idempotency key"))
    body_digest = models.CharField(max_length=64, blank=True, verbose_name=_("body digest"))
    template = models.ForeignKey(
        "notices.NoticeTemplate",
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("template"),
    )
    notice = models.OneToOneField(
        "notices.Notice",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="trigger",
        verbose_name=_("notice"),
    )
    values = models.JSONField(default=dict, blank=True, verbose_name=_("values"))
    triggered_at = models.DateTimeField(verbose_name=_("triggered at"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("trigger")
        verbose_name_plural = _("triggers")
        ordering = ["-triggered_at"]
        constraints = [
            # The database, not a check in code, guarantees one notice per trigger key.
            models.UniqueConstraint(
                fields=["integration", "source", "key"],
                condition=Q(integration__isnull=False),
                name="trigger_unique_key_per_integration",
            ),
            models.UniqueConstraint(
                fields=["department", "source", "key"],
                condition=Q(integration__isnull=True),
                name="trigger_unique_key_per_department",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()} {self.key}"


class ObservatoryWarning(models.Model):
    """A warning state seen in the Observatory's summary: one row per (code, issue time, action)."""

    statement = models.CharField(max_length=16)
    code = models.CharField(max_length=16)
    action = models.CharField(max_length=10)
    issue_time = models.DateTimeField()
    name_en = models.CharField(max_length=200, blank=True)
    name_zh = models.CharField(max_length=200, blank=True)
    type_en = models.CharField(max_length=200, blank=True)
    type_zh = models.CharField(max_length=200, blank=True)
    payload = models.JSONField(default=dict)
    first_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["-first_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["code", "issue_time", "action"], name="observatorywarning_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.action} {self.issue_time.isoformat()}"


code_pattern_validator = RegexValidator(
    r"^[A-Za-z0-9]{2,16}\*?$",
    _("Use a warning code such as WRAINB, or a prefix ending in * such as TC8*."),
)


class WarningMapping(models.Model):
    """Which predefined notice a department prepares when the Observatory issues a warning."""

    department = models.ForeignKey(
        "accounts.Department",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("department"),
    )
    code_pattern = models.CharField(
        _("warning code"),
        max_length=17,
        validators=[code_pattern_validator],
        help_text=_(
            "The subtype or statement code (WRAINB, TC3, WTS); a trailing * matches every code "
            "starting with it, so TC8* covers all four No. 8 signals."
        ),
    )
    template = models.ForeignKey(
        "notices.NoticeTemplate",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("notice on issue"),
    )
    cancel_template = models.ForeignKey(
        "notices.NoticeTemplate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("notice on cancellation"),
    )
    tier = models.CharField(_("tier"), max_length=16, choices=Tier.choices)
    segments = models.ManyToManyField(
        "audiences.Segment",
        blank=True,
        related_name="+",
        verbose_name=_("audience"),
        help_text=_("Who is notified when the tier is not citywide."),
    )
    active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("warning mapping")
        verbose_name_plural = _("warning mappings")
        ordering = ["department_id", "code_pattern"]
        constraints = [
            models.UniqueConstraint(
                fields=["department", "code_pattern"], name="warningmapping_unique_pattern"
            )
        ]

    def __str__(self) -> str:
        return f"{self.code_pattern} → {self.template}"

    def clean(self) -> None:
        # Codes are upper case in the feed; accept "tc8*" as typed and store "TC8*".
        self.code_pattern = self.code_pattern.strip().upper()

    def matches(self, *codes: str) -> bool:
        pattern = self.code_pattern
        if pattern.endswith("*"):
            return any(code.startswith(pattern[:-1]) for code in codes)
        return pattern in codes


class DepartmentTriggerPolicy(models.Model):
    """The department's target from trigger to send; the approval inbox shows waits against it."""

    department = models.OneToOneField(
        "accounts.Department", on_delete=models.CASCADE, related_name="trigger_policy"
    )
    target_seconds = models.PositiveIntegerField(
        _("target from trigger to send (seconds)"),
        default=300,
        validators=[MinValueValidator(30), MaxValueValidator(24 * 3600)],
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "department trigger policies"

    def __str__(self) -> str:
        return f"{self.department.code}: {self.target_seconds} s"


class CancellationState(models.TextChoices):
    CANCELLED = "cancelled", _("Notice cancelled before sending")
    AWAITING_CONFIRMATION = "awaiting", _("Recall waiting for a supervisor")
    CONFIRMED = "confirmed", _("Recall confirmed")
    DISMISSED = "dismissed", _("Recall dismissed")
    NOTHING_TO_DO = "noop", _("Nothing to cancel")


class CancellationRequest(models.Model):
    """A CAP Cancel for an alert that prepared a notice: cancelled at once, or a recall to confirm."""

    trigger = models.ForeignKey(
        Trigger, on_delete=models.PROTECT, related_name="cancellations", verbose_name=_("trigger")
    )
    notice = models.ForeignKey(
        "notices.Notice", on_delete=models.PROTECT, related_name="+", verbose_name=_("notice")
    )
    cancel_key = models.CharField(max_length=300, verbose_name=_("cancel key"))
    state = models.CharField(
        max_length=10, choices=CancellationState.choices, verbose_name=_("state")
    )
    reason = models.CharField(max_length=500, blank=True, verbose_name=_("reason"))
    requested_at = models.DateTimeField(verbose_name=_("requested at"))
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("decided by"),
    )
    decided_at = models.DateTimeField(null=True, blank=True, verbose_name=_("decided at"))

    class Meta:
        verbose_name = _("cancellation request")
        verbose_name_plural = _("cancellation requests")
        ordering = ["-requested_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["trigger", "cancel_key"], name="cancellationrequest_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_state_display()} · notice #{self.notice_id}"
