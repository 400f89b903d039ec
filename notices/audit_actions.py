"""Audit action codes of the notices app, and the operations a refusal event names."""

from __future__ import annotations

from enum import StrEnum

from django.db import models
from django.utils.translation import gettext_lazy as _


class NoticeAuditAction(models.TextChoices):
    CREATED = "notices.created", _("Notice created")
    UPDATED = "notices.updated", _("Notice edited (approvals voided)")
    SUBMITTED = "notices.submitted", _("Notice submitted for approval")
    APPROVAL_RECORDED = "notices.approval_recorded", _("Approval recorded")
    APPROVED = "notices.approved", _("Notice approved")
    APPROVAL_REFUSED = "notices.approval_refused", _("Approval refused")
    REJECTED = "notices.rejected", _("Notice rejected")
    CANCELLED = "notices.cancelled", _("Notice cancelled")
    REFUSED = "notices.refused", _("Notice change refused")
    ATTACHMENT_UPLOADED = "notices.attachment_uploaded", _("Attachment uploaded")
    TEMPLATES_SEEDED = "notices.templates_seeded", _("Notice templates seeded")
    APPROVERS_ALERTED = "notices.approvers_alerted", _("Approvers alerted")
    RETURNED_FOR_APPROVAL = (
        "notices.returned_for_approval",
        _("Notice returned for approval (audience, risk or reach changed)"),
    )


class NoticeOperation(StrEnum):
    """What was attempted, in a refusal event's data["operation"]."""

    CREATE = "create"
    UPDATE = "update"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
