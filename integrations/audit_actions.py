"""Audit action codes of the integrations app (registered in IntegrationsConfig.ready)."""

from __future__ import annotations

from django.db import models


class IntegrationAuditAction(models.TextChoices):
    CREATED = "integrations.created", "Integration created"
    UPDATED = "integrations.updated", "Integration changed"
    SECRET_ROTATED = "integrations.secret_rotated", "Integration secret rotated"
    TRIGGER_ACCEPTED = "integrations.trigger_accepted", "Trigger accepted, notice prepared"
    TRIGGER_REPEATED = "integrations.trigger_repeated", "Trigger repeated with the same key"
    TRIGGER_REFUSED = "integrations.trigger_refused", "Trigger refused"
    UNKNOWN_TRAFFIC = (
        "integrations.unknown_traffic",
        "Requests to unknown integration addresses (one summary per window)",
    )
    STATUS_READ = "integrations.status_read", "Trigger status read by the caller"
    WARNING_RECEIVED = "integrations.warning_received", "Observatory warning received"
    WARNING_TRIGGERED = "integrations.warning_triggered", "Observatory warning prepared a notice"
    WARNING_FAILED = "integrations.warning_failed", "Observatory warning could not prepare a notice"
    MAPPING_CHANGED = "integrations.mapping_changed", "Warning mapping changed"
    MAPPING_DELETED = "integrations.mapping_deleted", "Warning mapping deleted"
    POLICY_CHANGED = "integrations.policy_changed", "Trigger target changed"
    CANCELLATION_REQUESTED = (
        "integrations.cancellation_requested",
        "Cancellation requested by a CAP Cancel",
    )
    CANCELLATION_CONFIRMED = "integrations.cancellation_confirmed", "Requested recall confirmed"
    CANCELLATION_DISMISSED = "integrations.cancellation_dismissed", "Requested recall dismissed"
