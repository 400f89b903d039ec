"""Audit action codes of the delivery app (registered in DeliveryConfig.ready)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class DeliveryAuditAction(models.TextChoices):
    DISPATCH_STARTED = "delivery.dispatch_started", _("Dispatch started")
    DISPATCH_FINISHED = "delivery.dispatch_finished", _("Dispatch finished")
    STRATEGY_CHANGED = "delivery.strategy_changed", _("Send strategy changed before sending")
    BATCH_ACCEPTED = "delivery.batch_accepted", _("Batch accepted by DingTalk")
    BATCH_FAILED = "delivery.batch_failed", _("Batch failed")
    BATCH_UNKNOWN = (
        "delivery.batch_unresolved",
        _("Batch outcome unknown, resent for reconciliation"),
    )
    BATCH_HELD = "delivery.batch_held", _("Batch outcome unknown, held for a supervisor")
    BATCH_HELD_RESENT = "delivery.batch_held_resent", _("Held batch sent again by a supervisor")
    BATCH_HELD_CLOSED = "delivery.batch_held_closed", _("Held batch closed by a supervisor")
    SW_BATCH_ACCEPTED = "delivery.sw_batch_accepted", _("Service Window send accepted by DingTalk")
    SW_BATCH_FAILED = "delivery.sw_batch_failed", _("Service Window send failed")
    SW_RECALLED = "delivery.sw_recalled", _("Service Window send recalled")
    MEDIA_UPLOADED = "delivery.media_uploaded", _("Attachment uploaded to DingTalk")
    PAUSED = "delivery.paused", _("Sending paused")
    RESUMED = "delivery.resumed", _("Sending resumed")
    REMINDED = "delivery.reminded", _("Reminder sent")
    CONFIRMED = "delivery.confirmed", _("Recipient confirmed")
    RECALLED = "delivery.recalled", _("Notice recalled")
    RECALL_REFUSED = "delivery.recall_refused", _("Recall refused")
    OUTREACH_LISTED = "delivery.outreach_listed", _("Outreach list opened")
    OUTREACH_ASSIGNED = "delivery.outreach_assigned", _("Outreach case assigned")
    OUTREACH_CLOSED = "delivery.outreach_closed", _("Outreach case closed")
    OUTREACH_EXPORTED = "delivery.outreach_exported", _("Outreach list exported")
