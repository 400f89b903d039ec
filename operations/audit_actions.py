"""Audit action codes of the operations app (registered in OperationsConfig.ready)."""

from __future__ import annotations

from django.db import models


class OperationsAuditAction(models.TextChoices):
    RETENTION_CHANGED = "operations.retention_changed", "Retention setting changed"
    RETENTION_APPLIED = "operations.retention_applied", "Expired personal data anonymised"
