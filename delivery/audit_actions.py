"""Audit action codes of the delivery app (registered in DeliveryConfig.ready)."""

from __future__ import annotations

from django.db import models


class DeliveryAuditAction(models.TextChoices):
    DISPATCH_STARTED = "delivery.dispatch_started", "Dispatch started"
    DISPATCH_FINISHED = "delivery.dispatch_finished", "Dispatch finished"
    STRATEGY_CHANGED = "delivery.strategy_changed", "Send strategy changed before sending"
    BATCH_ACCEPTED = "delivery.batch_accepted", "Batch accepted by DingTalk"
    BATCH_FAILED = "delivery.batch_failed", "Batch failed"
    BATCH_UNKNOWN = "delivery.batch_unresolved", "Batch outcome unknown, resent for reconciliation"
    BATCH_HELD = "delivery.batch_held", "Batch outcome unknown, held for a supervisor"
    BATCH_HELD_RESENT = "delivery.batch_held_resent", "Held batch sent again by a supervisor"
    BATCH_HELD_CLOSED = "delivery.batch_held_closed", "Held batch closed by a supervisor"
    SW_BATCH_ACCEPTED = "delivery.sw_batch_accepted", "Service Window send accepted by DingTalk"
    SW_BATCH_FAILED = "delivery.sw_batch_failed", "Service Window send failed"
    SW_RECALLED = "delivery.sw_recalled", "Service Window send recalled"
    MEDIA_UPLOADED = "delivery.media_uploaded", "Attachment uploaded to DingTalk"
    PAUSED = "delivery.paused", "Sending paused"
    RESUMED = "delivery.resumed", "Sending resumed"
    REMINDED = "delivery.reminded", "Reminder sent"
    CONFIRMED = "delivery.confirmed", "Recipient confirmed"
    RECALLED = "delivery.recalled", "Notice recalled"
    RECALL_REFUSED = "delivery.recall_refused", "Recall refused"
    OUTREACH_LISTED = "delivery.outreach_listed", "Outreach list opened"
    OUTREACH_ASSIGNED = "delivery.outreach_assigned", "Outreach case assigned"
    OUTREACH_CLOSED = "delivery.outreach_closed", "Outreach case closed"
    OUTREACH_EXPORTED = "delivery.outreach_exported", "Outreach list exported"
