"""Audit action codes of the integrations app (registered in IntegrationsConfig.ready)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class IntegrationAuditAction(models.TextChoices):
    CREATED = "integrations.created", _("Integration created")
    UPDATED = "integrations.updated", _("Integration changed")
    SECRET_ROTATED = "integrations.secret_rotated", _("Integration secret rotated")
    TRIGGER_ACCEPTED = "integrations.trigger_accepted", _("Trigger accepted, notice prepared")
    TRIGGER_REPEATED = "integrations.trigger_repeated", _("Trigger repeated with the same key")
    TRIGGER_REFUSED = "integrations.trigger_refused", _("Trigger refused")
    UNKNOWN_TRAFFIC = (
        "integrations.unknown_traffic",
        _("Requests to unknown integration addresses (one summary per window)"),
    )
    STATUS_READ = "integrations.status_read", _("Trigger status read by the caller")
    WARNING_RECEIVED = "integrations.warning_received", _("Observatory warning received")
    WARNING_TRIGGERED = "integrations.warning_triggered", _("Observatory warning prepared a notice")
    WARNING_FAILED = (
        "integrations.warning_failed",
        _("Observatory warning could not prepare a notice"),
    )
    MAPPING_CHANGED = "integrations.mapping_changed", _("Warning mapping changed")
    MAPPING_DELETED = "integrations.mapping_deleted", _("Warning mapping deleted")
    POLICY_CHANGED = "integrations.policy_changed", _("Trigger target changed")
    CANCELLATION_REQUESTED = (
        "integrations.cancellation_requested",
        _("Cancellation requested by a CAP Cancel"),
    )
    CANCELLATION_CONFIRMED = "integrations.cancellation_confirmed", _("Requested recall confirmed")
    CANCELLATION_DISMISSED = "integrations.cancellation_dismissed", _("Requested recall dismissed")
