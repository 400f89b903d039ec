"""The audit trail: one append-only, hash-chained table of events, plus its purge checkpoints
and the auditors' background exports."""

from __future__ import annotations

import uuid

import pgtrigger
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from audit.reasons import reason_text

_APPEND_ONLY_TRIGGERS = [
    pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete),
    # TRUNCATE skips row triggers, so it needs its own statement-level guard. The one
    # exception is a database Django's test runner created (test_*): its teardown flushes
    # every table with a single TRUNCATE. Production also revokes TRUNCATE (audit/README.md).
    pgtrigger.Trigger(
        name="no_truncate",
        level=pgtrigger.Statement,
        when=pgtrigger.Before,
        operation=pgtrigger.Truncate,
        func=(
            "IF current_database() NOT LIKE 'test\\_%' THEN "
            "RAISE EXCEPTION 'pgtrigger: Cannot truncate % table', TG_TABLE_NAME; "
            "END IF; RETURN NULL;"
        ),
    ),
]


class AuditEvent(models.Model):
    # Position in the hash chain; unique, so two writers can never both append event n.
    sequence = models.BigIntegerField(unique=True, editable=False, verbose_name=_("sequence"))
    occurred_at = models.DateTimeField(db_index=True, verbose_name=_("occurred at"))
    # No database constraint and DO_NOTHING: deleting a user or department must not rewrite
    # (SET NULL) rows the triggers protect; the label snapshots keep the trail readable.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        verbose_name=_("actor"),
    )
    # Snapshots: the trail must still read correctly after a user or department is renamed or erased.
    actor_label = models.CharField(max_length=200, db_index=True, verbose_name=_("actor label"))
    actor_department = models.CharField(
        max_length=200, blank=True, verbose_name=_("actor department")
    )
    department = models.ForeignKey(
        "accounts.Department",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # covered by the (department, sequence) index below
        related_name="+",
        verbose_name=_("department"),
    )
    action = models.CharField(
        max_length=64, db_index=True, verbose_name=_("action")
    )  # a code registered in audit.actions
    target_type = models.CharField(max_length=100, blank=True, verbose_name=_("target type"))
    target_id = models.CharField(max_length=64, blank=True, verbose_name=_("target id"))
    target_label = models.CharField(max_length=300, blank=True, verbose_name=_("target label"))
    data = models.JSONField(default=dict, blank=True, verbose_name=_("data"))
    request_id = models.UUIDField(null=True, blank=True, verbose_name=_("request id"))
    ip = models.GenericIPAddressField(null=True, blank=True, verbose_name=_("IP address"))
    otp_verified = models.BooleanField(default=False, verbose_name=_("two-factor verified"))
    prev_hash = models.CharField(max_length=64, editable=False, verbose_name=_("previous hash"))
    hash = models.CharField(max_length=64, editable=False, verbose_name=_("hash"))
    # SHA-256 of the canonical content (audit.chain.content_hash), kept so an export can carry
    # it: hash = sha256(prev_hash:sequence:content_hash). Empty for version 1 events.
    content_hash = models.CharField(
        max_length=64, blank=True, default="", editable=False, verbose_name=_("content hash")
    )

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-sequence"]
        indexes = [
            models.Index(fields=["target_type", "target_id"]),
            models.Index(fields=["department", "sequence"], name="audit_event_dept_seq"),
        ]
        permissions = [("export_auditevent", "Can export audit events")]
        triggers = _APPEND_ONLY_TRIGGERS

    def __str__(self) -> str:
        return f"#{self.sequence} {self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"


class AuditCheckpoint(models.Model):
    """Where the chain resumes after a purge: the last purged event's sequence and hash.

    The purge's own `audit.purged` event repeats both values inside the chain, so a forged
    checkpoint does not verify unless the whole chain after it is rewritten too.
    """

    sequence = models.BigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    purged_before = models.DateTimeField()
    events_deleted = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-sequence"]
        triggers = _APPEND_ONLY_TRIGGERS

    def __str__(self) -> str:
        return f"checkpoint after #{self.sequence}"


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    XLSX = "xlsx", "Excel (XLSX)"
    JSON = "json", "JSON"


class ExportStatus(models.TextChoices):
    PENDING = "pending", _("Waiting")
    RUNNING = "running", _("Running")
    DONE = "done", _("Ready")
    FAILED = "failed", _("Failed")


class AuditExport(models.Model):
    """An export too large (or too spreadsheet-shaped) to stream in the request."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    request_id = models.UUIDField(null=True, blank=True)
    format = models.CharField(max_length=8, choices=ExportFormat.choices)
    filters = models.JSONField(default=dict)
    # The chain head when it was asked for: the file shows the trail as it stood then.
    head_sequence = models.BigIntegerField()
    status = models.CharField(
        max_length=16, choices=ExportStatus.choices, default=ExportStatus.PENDING
    )
    total_rows = models.BigIntegerField(null=True, blank=True)
    rows_written = models.BigIntegerField(default=0)
    file = models.FileField(upload_to="audit-exports/", blank=True, max_length=200)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"{self.format} export {self.id}"


class ChainVerification(models.Model):
    """One verification of the whole chain asked for on the Chain page, run in the background."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(
        max_length=16, choices=ExportStatus.choices, default=ExportStatus.PENDING
    )
    # How many events the chain held when the run started (head minus first sequence, + 1).
    total = models.BigIntegerField(null=True, blank=True)
    checked = models.BigIntegerField(default=0)
    ok = models.BooleanField(null=True, blank=True)
    head_sequence = models.BigIntegerField(null=True, blank=True)
    head_hash = models.CharField(max_length=64, blank=True)
    # Why it failed: a code of audit.reasons and its values, worded in the reader's language.
    reason_code = models.CharField(max_length=32, blank=True)
    reason_params = models.JSONField(default=dict, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"chain verification {self.id}"

    @property
    def reason(self) -> str:
        """Why it failed, in the active language."""
        return reason_text(self.reason_code, self.reason_params)
