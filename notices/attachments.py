"""Attachments: an image, file or voice clip stored for a notice, checked against DingTalk's
limits and the portal's own before it is kept."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from accounts import permissions as perms
from accounts.models import Department
from audit.services import audit_record
from common.types import Actor
from dingtalk import messages as dt
from dingtalk.errors import MessageInvalid
from notices.audit_actions import NoticeAuditAction as Action
from notices.content_errors import explain_upload
from notices.errors import NoticeInvalid
from notices.guards import acting_person, require_perm
from notices.models import Attachment, MessageKind


@transaction.atomic
def attachment_upload(
    *,
    actor: Actor,
    department: Department,
    media_type: str,
    upload: UploadedFile,
    duration_s: int | None = None,
) -> Attachment:
    """Store an image, file or voice clip after checking type, extension and size.

    Permission: COMPOSE_NOTICE. Audit: notices.attachment_uploaded. NoticeInvalid on bad input.
    """
    require_perm(actor, perms.COMPOSE_NOTICE, department, system_ok=True)
    name = upload.name or "upload"
    size = int(upload.size or 0)
    if media_type not in (MessageKind.IMAGE, MessageKind.FILE, MessageKind.VOICE):
        raise NoticeInvalid({"attachment": [_("Attach an image, a file or a voice clip.")]})
    try:
        dt.validate_media_upload(media_type, name, size)
    except MessageInvalid as exc:
        raise NoticeInvalid({"attachment": [explain_upload(media_type, name, size)]}) from exc
    if media_type == MessageKind.FILE and size > dt.MAX_FILE_MESSAGE_BYTES:
        raise NoticeInvalid(
            {
                "attachment": [
                    _("A file message may carry at most %(n)s bytes.")
                    % {"n": number_format(dt.MAX_FILE_MESSAGE_BYTES, force_grouping=True)}
                ]
            }
        )
    if size > int(settings.NOTICES_MAX_ATTACHMENT_BYTES):
        raise NoticeInvalid(
            {
                "attachment": [
                    _("Attachments are limited to %(n)s bytes.")
                    % {
                        "n": number_format(
                            int(settings.NOTICES_MAX_ATTACHMENT_BYTES), force_grouping=True
                        )
                    }
                ]
            }
        )
    if media_type == MessageKind.VOICE and not (
        duration_s and 0 < duration_s < dt.MAX_VOICE_SECONDS
    ):
        raise NoticeInvalid(
            {
                "attachment": [
                    _("Give the voice clip's length, 1 to %(n)d seconds.")
                    % {"n": dt.MAX_VOICE_SECONDS - 1}
                ]
            }
        )
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    attachment = Attachment(
        department=department,
        media_type=media_type,
        original_name=name[:255],
        size=size,
        sha256=digest.hexdigest(),
        duration_s=duration_s if media_type == MessageKind.VOICE else None,
        uploaded_by=acting_person(actor),
    )
    attachment.file.save(name, upload, save=False)
    attachment.save()
    audit_record(
        actor=actor,
        action=Action.ATTACHMENT_UPLOADED,
        target=attachment,
        department=department,
        data={"name": name, "size": size, "sha256": attachment.sha256, "media_type": media_type},
    )
    return attachment
