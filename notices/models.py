"""Notices, their attachments and templates, and the record of who wrote, approved or rejected them.

Status transitions from draft to approved/scheduled, rejection and cancellation are made by
notices.services and notices.approval; everything from approved onwards (sending, pausing,
sent, recalled) is decided by the delivery app, which moves the status only through
notices.delivery_status (conditional updates).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from common.i18n import in_reader_language


class Tier(models.TextChoices):
    CITYWIDE = "citywide", _("Citywide broadcast")
    TARGETED = "targeted", _("Targeted")
    CLOSED_LOOP = "closed_loop", _("Closed-loop instruction")


class Status(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SUBMITTED = "submitted", _("Waiting for approval")
    APPROVED = "approved", _("Approved")
    SCHEDULED = "scheduled", _("Scheduled")
    SENDING = "sending", _("Sending")
    PAUSED = "paused", _("Paused")
    SENT = "sent", _("Sent")
    SENT_WITH_FAILURES = "sent_with_failures", _("Sent with failures")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    RECALLED = "recalled", _("Recalled")


# Statuses in which the content may still change (a change voids every approval).
EDITABLE_STATUSES = frozenset({Status.DRAFT, Status.SUBMITTED})
# Statuses that notices.services may cancel: nothing has gone out yet.
CANCELLABLE_STATUSES = frozenset(
    {Status.DRAFT, Status.SUBMITTED, Status.APPROVED, Status.SCHEDULED}
)


class MessageKind(models.TextChoices):
    TEXT = "text", _("Text")
    MARKDOWN = "markdown", _("Markdown")
    ACTION_CARD = "action_card", _("Action card with buttons")
    LINK = "link", _("Link")
    IMAGE = "image", _("Image")
    FILE = "file", _("File")
    VOICE = "voice", _("Voice")


MEDIA_KINDS = frozenset({MessageKind.IMAGE, MessageKind.FILE, MessageKind.VOICE})
# File and voice messages carry nothing but the media: their text travels in a second message
# (a companion card) beside it, so they take two calls per batch.
COMPANION_KINDS = frozenset({MessageKind.FILE, MessageKind.VOICE})


class RemindWhom(models.TextChoices):
    UNREAD = "unread", _("Those who have not read it")
    UNCONFIRMED = "unconfirmed", _("Those who have not confirmed")


class Classification(models.TextChoices):
    UNCLASSIFIED = "unclassified", _("Unclassified")
    RESTRICTED = "restricted", _("Restricted")


class Source(models.TextChoices):
    MANUAL = "manual", _("Written by staff")
    TEMPLATE = "template", _("From a template")
    INTEGRATION = "integration", _("Triggered by an integration")


class Attachment(models.Model):
    """An uploaded image, file or voice clip; type and size are checked against DingTalk's limits."""

    department = models.ForeignKey(
        "accounts.Department", on_delete=models.PROTECT, related_name="+"
    )
    media_type = models.CharField(
        _("media type"),
        max_length=8,
        choices=[
            (MessageKind.IMAGE, _("Image")),
            (MessageKind.FILE, _("File")),
            (MessageKind.VOICE, _("Voice")),
        ],
    )
    file = models.FileField(upload_to="notices/attachments/%Y/%m/")
    original_name = models.CharField(_("file name"), max_length=255)
    size = models.PositiveIntegerField(_("size (bytes)"))
    sha256 = models.CharField(max_length=64)
    duration_s = models.PositiveSmallIntegerField(_("duration (seconds)"), null=True, blank=True)
    # Filled by delivery after uploading to DingTalk (media ids expire, so with the time).
    dingtalk_media_id = models.CharField(max_length=256, blank=True)
    dingtalk_media_uploaded_at = models.DateTimeField(null=True, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.media_type}, {self.size} bytes)"


class NoticeTemplate(models.Model):
    """Bilingual content with `{placeholder}` names and a predefined workflow (tier, options)."""

    department = models.ForeignKey(
        "accounts.Department",
        on_delete=models.CASCADE,
        related_name="notice_templates",
        verbose_name=_("department"),
    )
    code = models.SlugField(_("code"), max_length=40)
    name = models.CharField(_("name"), max_length=120)
    description = models.CharField(_("description"), max_length=300, blank=True)
    # The external trigger this template answers, e.g. an Observatory warning code ("WRAINA").
    trigger_code = models.CharField(_("trigger code"), max_length=40, blank=True, db_index=True)
    tier = models.CharField(_("tier"), max_length=16, choices=Tier.choices)
    kind = models.CharField(_("message kind"), max_length=16, choices=MessageKind.choices)
    title_en = models.CharField(_("title (English)"), max_length=200, blank=True)
    title_zh = models.CharField(_("title (Traditional Chinese)"), max_length=200, blank=True)
    body_en = models.TextField(_("body (English)"), blank=True)
    body_zh = models.TextField(_("body (Traditional Chinese)"), blank=True)
    buttons = models.JSONField(_("buttons"), default=list, blank=True)
    link_url = models.CharField(_("link URL"), max_length=700, blank=True)
    requires_confirmation = models.BooleanField(_("requires confirmation"), default=False)
    remind_after_minutes = models.PositiveIntegerField(
        _("remind after (minutes)"), null=True, blank=True
    )
    max_reminders = models.PositiveSmallIntegerField(_("reminders at most"), default=0)
    remind_whom = models.CharField(
        _("remind whom"), max_length=16, choices=RemindWhom.choices, blank=True
    )
    expires_after_minutes = models.PositiveIntegerField(
        _("expires after (minutes)"), null=True, blank=True
    )
    classification = models.CharField(
        _("classification"),
        max_length=16,
        choices=Classification.choices,
        default=Classification.UNCLASSIFIED,
    )
    voice_from_text = models.BooleanField(_("Cantonese voice clip"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("notice template")
        verbose_name_plural = _("notice templates")
        ordering = ["department_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["department", "code"], name="noticetemplate_unique_code_per_department"
            )
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        """The name in the reader's language: the seeded templates' names are in the catalogue
        (notices.seed.SEEDED_NAMES); a name a department typed is shown as typed."""
        return gettext(self.name) if self.name else self.name


class Notice(models.Model):
    department = models.ForeignKey(
        "accounts.Department",
        on_delete=models.PROTECT,
        related_name="notices",
        verbose_name=_("department"),
    )
    tier = models.CharField(_("tier"), max_length=16, choices=Tier.choices)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.DRAFT
    )
    kind = models.CharField(
        _("message kind"), max_length=16, choices=MessageKind.choices, default=MessageKind.TEXT
    )
    title_en = models.CharField(_("title (English)"), max_length=200, blank=True)
    title_zh = models.CharField(_("title (Traditional Chinese)"), max_length=200, blank=True)
    body_en = models.TextField(_("body (English)"), blank=True)
    body_zh = models.TextField(_("body (Traditional Chinese)"), blank=True)
    # [{"title_en": ..., "title_zh": ..., "url": ...}], at most five.
    buttons = models.JSONField(_("buttons"), default=list, blank=True)
    link_url = models.CharField(_("link URL"), max_length=700, blank=True)
    link_pic_url = models.CharField(_("link picture URL"), max_length=700, blank=True)
    attachment = models.ForeignKey(
        Attachment,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="notices",
        verbose_name=_("attachment"),
    )
    # Audience: citywide tier = every subscriber of the department; otherwise these segments.
    # A Cantonese voice clip made from the Chinese text (notices.voice_clips), or from this
    # summary when the text is too long for a voice message.
    voice_from_text = models.BooleanField(_("Cantonese voice clip"), default=False)
    voice_summary = models.TextField(_("voice summary (Chinese)"), blank=True)
    segments = models.ManyToManyField(
        "audiences.Segment", blank=True, related_name="notices", verbose_name=_("segments")
    )
    high_risk = models.BooleanField(_("high risk"), default=False)
    requires_confirmation = models.BooleanField(_("requires confirmation"), default=False)
    remind_after_minutes = models.PositiveIntegerField(
        _("remind after (minutes)"), null=True, blank=True
    )
    max_reminders = models.PositiveSmallIntegerField(_("reminders at most"), default=0)
    remind_whom = models.CharField(
        _("remind whom"), max_length=16, choices=RemindWhom.choices, blank=True
    )
    send_at = models.DateTimeField(_("send at"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    classification = models.CharField(
        _("classification"),
        max_length=16,
        choices=Classification.choices,
        default=Classification.UNCLASSIFIED,
    )
    version = models.PositiveIntegerField(default=1, verbose_name=_("version"))
    version_hash = models.CharField(max_length=64, db_index=True, verbose_name=_("version hash"))
    # Recipients counted when the version was submitted (the inbox shows reach without counting).
    reach = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("reach"))
    # Recipients counted under the lock of the final approval: the send-time check compares.
    approved_reach = models.PositiveIntegerField(
        null=True, blank=True, verbose_name=_("approved reach")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )
    source = models.CharField(
        max_length=16, choices=Source.choices, default=Source.MANUAL, verbose_name=_("source")
    )
    template = models.ForeignKey(
        NoticeTemplate,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="notices",
        verbose_name=_("template"),
    )
    triggered_at = models.DateTimeField(null=True, blank=True, verbose_name=_("triggered at"))
    # An external reference (CAP identifier, webhook event id) for the integration that made it.
    external_ref = models.CharField(
        max_length=200, blank=True, db_index=True, verbose_name=_("external ref")
    )
    status_reason = models.CharField(max_length=500, blank=True, verbose_name=_("status reason"))
    submitted_at = models.DateTimeField(null=True, blank=True, verbose_name=_("submitted at"))
    # The version whose approvers were last alerted: a re-run of the alert task sends nothing.
    approvers_alerted_version = models.PositiveIntegerField(
        null=True, blank=True, verbose_name=_("approvers alerted version")
    )
    approved_at = models.DateTimeField(null=True, blank=True, verbose_name=_("approved at"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("notice")
        verbose_name_plural = _("notices")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["department", "status"], name="notice_department_status_idx")
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def title(self) -> str:
        """In the reader's language when the notice has it (zh-Hant readers see the Chinese)."""
        return in_reader_language(self.title_en, self.title_zh)

    @property
    def is_urgent(self) -> bool:
        """Citywide and high-risk notices go first: their own queue, priority and budget."""
        return self.tier == Tier.CITYWIDE or self.high_risk


class NoticeVersion(models.Model):
    """A snapshot of what each version would send, for the detail page and the audit trail."""

    notice = models.ForeignKey(Notice, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    version_hash = models.CharField(max_length=64)
    snapshot = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["notice_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["notice", "version"], name="noticeversion_unique")
        ]

    def __str__(self) -> str:
        return f"#{self.notice_id} v{self.version}"


class ContributionKind(models.TextChoices):
    WROTE = "wrote", _("Wrote")
    EDITED = "edited", _("Edited")
    SUBMITTED = "submitted", _("Submitted")


class NoticeContribution(models.Model):
    """Who wrote, edited or submitted a version: none of them may approve that version."""

    notice = models.ForeignKey(
        Notice, on_delete=models.CASCADE, related_name="contributions", verbose_name=_("notice")
    )
    version = models.PositiveIntegerField(verbose_name=_("version"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("user")
    )
    kind = models.CharField(max_length=16, choices=ContributionKind.choices, verbose_name=_("kind"))
    at = models.DateTimeField(auto_now_add=True, verbose_name=_("at"))

    class Meta:
        verbose_name = _("notice contribution")
        verbose_name_plural = _("notice contributions")
        ordering = ["notice_id", "version", "at"]
        constraints = [
            models.UniqueConstraint(
                fields=["notice", "version", "user", "kind"], name="noticecontribution_unique"
            )
        ]

    def __str__(self) -> str:
        return _("#%(notice)s v%(version)s: %(kind)s by user %(user)s") % {
            "notice": self.notice_id,
            "version": self.version,
            "kind": self.get_kind_display(),
            "user": self.user_id,
        }


class Approval(models.Model):
    """One approver's approval of one version; voided (kept, not counted) when the notice changes."""

    notice = models.ForeignKey(
        Notice, on_delete=models.CASCADE, related_name="approvals", verbose_name=_("notice")
    )
    version = models.PositiveIntegerField(verbose_name=_("version"))
    version_hash = models.CharField(max_length=64, verbose_name=_("version hash"))
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("approver"),
    )
    approved_at = models.DateTimeField(auto_now_add=True, verbose_name=_("approved at"))
    totp_verified = models.BooleanField(default=False, verbose_name=_("authenticator code checked"))
    reach_acknowledged = models.BooleanField(default=False, verbose_name=_("reach acknowledged"))
    voided_at = models.DateTimeField(null=True, blank=True, verbose_name=_("voided at"))

    class Meta:
        verbose_name = _("approval")
        verbose_name_plural = _("approvals")
        ordering = ["notice_id", "approved_at"]
        constraints = [
            # The last line of defence: the same person can never count twice for one version.
            models.UniqueConstraint(
                fields=["notice", "version_hash", "approver"], name="approval_unique_per_version"
            )
        ]

    def __str__(self) -> str:
        return _("#%(notice)s v%(version)s approved by user %(user)s") % {
            "notice": self.notice_id,
            "version": self.version,
            "user": self.approver_id,
        }


class Rejection(models.Model):
    notice = models.ForeignKey(
        Notice, on_delete=models.CASCADE, related_name="rejections", verbose_name=_("notice")
    )
    version = models.PositiveIntegerField(verbose_name=_("version"))
    version_hash = models.CharField(max_length=64, verbose_name=_("version hash"))
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("by")
    )
    reason = models.TextField(_("reason"))
    at = models.DateTimeField(auto_now_add=True, verbose_name=_("at"))

    class Meta:
        verbose_name = _("rejection")
        verbose_name_plural = _("rejections")
        ordering = ["notice_id", "-at"]

    def __str__(self) -> str:
        return _("#%(notice)s v%(version)s rejected by user %(user)s") % {
            "notice": self.notice_id,
            "version": self.version,
            "user": self.by_id,
        }
