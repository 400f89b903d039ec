"""Audit action codes of the notices app, and the operations a refusal event names."""

from __future__ import annotations

from enum import StrEnum

from django.db import models


class NoticeAuditAction(models.TextChoices):
    CREATED = "notices.created", "Notice created"
    UPDATED = "notices.updated", "Notice edited (approvals voided)"
    SUBMITTED = "notices.submitted", "Notice submitted for approval"
    APPROVAL_RECORDED = "notices.approval_recorded", "Approval recorded"
    APPROVED = "notices.approved", "Notice approved"
    APPROVAL_REFUSED = "notices.approval_refused", "Approval refused"
    REJECTED = "notices.rejected", "Notice rejected"
    CANCELLED = "notices.cancelled", "Notice cancelled"
    REFUSED = "notices.refused", "Notice change refused"
    ATTACHMENT_UPLOADED = "notices.attachment_uploaded", "Attachment uploaded"
    TEMPLATES_SEEDED = "notices.templates_seeded", "Notice templates seeded"
    APPROVERS_ALERTED = "notices.approvers_alerted", "Approvers alerted"
    RETURNED_FOR_APPROVAL = (
        "notices.returned_for_approval",
        "Notice returned for approval (audience, risk or reach changed)",
    )


class NoticeOperation(StrEnum):
    """What was attempted, in a refusal event's data["operation"]."""

    CREATE = "create"
    UPDATE = "update"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
