"""Audit action codes of the operations app (registered in OperationsConfig.ready)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class OperationsAuditAction(models.TextChoices):
    RETENTION_CHANGED = "operations.retention_changed", _("Retention setting changed")
    RETENTION_APPLIED = "operations.retention_applied", _("Expired personal data anonymised")
