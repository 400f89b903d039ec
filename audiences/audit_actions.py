"""Audit action codes of the audiences app (registered in AudiencesConfig.ready)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class AudienceAuditAction(models.TextChoices):
    IMPORTED = "audiences.imported", _("Recipients imported")
    IMPORT_REJECTED = "audiences.import_rejected", _("Recipient import rejected")
    IMPORT_FAILED = "audiences.import_failed", _("Recipient import job failed")
    EXPORTED = "audiences.exported", _("Recipients exported")
    RECIPIENT_CHANGED = "audiences.recipient_changed", _("Recipient changed")
    ERASED = "audiences.erased", _("Recipient's personal data erased")
    SEGMENT_CREATED = "audiences.segment_created", _("Segment created")
    SEGMENT_CHANGED = "audiences.segment_changed", _("Segment changed")
    SEGMENT_DELETED = "audiences.segment_deleted", _("Segment deleted")
    VENUES_IMPORTED = "audiences.venues_imported", _("Venues imported")
    CHECKINS_IMPORTED = "audiences.checkins_imported", _("Check-ins imported")
    SETTINGS_CHANGED = "audiences.settings_changed", _("Audience settings changed")
    TAG_RISK_CHANGED = "audiences.tag_risk_changed", _("Tag's high-risk flag changed")
    SYNC_REQUESTED = "audiences.sync_requested", _("Directory sync requested")
    SYNCED = "audiences.synced", _("Directory synced")
    SYNC_FAILED = "audiences.sync_failed", _("Directory sync failed")
    DIRECTORY_EVENT = "audiences.directory_event_applied", _("Directory event applied")
    FOLLOWER_CHANGED = "audiences.follower_changed", _("Service Window follower changed")
