"""Audit action codes of the audiences app (registered in AudiencesConfig.ready)."""

from __future__ import annotations

from django.db import models


class AudienceAuditAction(models.TextChoices):
    IMPORTED = "audiences.imported", "Recipients imported"
    IMPORT_REJECTED = "audiences.import_rejected", "Recipient import rejected"
    IMPORT_FAILED = "audiences.import_failed", "Recipient import job failed"
    EXPORTED = "audiences.exported", "Recipients exported"
    RECIPIENT_CHANGED = "audiences.recipient_changed", "Recipient changed"
    ERASED = "audiences.erased", "Recipient's personal data erased"
    SEGMENT_CREATED = "audiences.segment_created", "Segment created"
    SEGMENT_CHANGED = "audiences.segment_changed", "Segment changed"
    SEGMENT_DELETED = "audiences.segment_deleted", "Segment deleted"
    VENUES_IMPORTED = "audiences.venues_imported", "Venues imported"
    CHECKINS_IMPORTED = "audiences.checkins_imported", "Check-ins imported"
    SETTINGS_CHANGED = "audiences.settings_changed", "Audience settings changed"
    TAG_RISK_CHANGED = "audiences.tag_risk_changed", "Tag's high-risk flag changed"
    SYNC_REQUESTED = "audiences.sync_requested", "Directory sync requested"
    SYNCED = "audiences.synced", "Directory synced"
    SYNC_FAILED = "audiences.sync_failed", "Directory sync failed"
    DIRECTORY_EVENT = "audiences.directory_event_applied", "Directory event applied"
    FOLLOWER_CHANGED = "audiences.follower_changed", "Service Window follower changed"
