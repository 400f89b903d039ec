"""The DingTalk media of image, file and voice notices: uploaded once, re-uploaded when old.

A media message names its picture, document or voice clip by the ``media_id`` that DingTalk's
``media/upload`` returned (dingtalk-api.md §3, §5). The planner calls :func:`ensure_media` before
it builds any message, so the snapshot (which builds messages inside its transactions) only
reads the stored id.

- The id and its upload time live on the attachment (``Attachment.dingtalk_media_id`` and
  ``dingtalk_media_uploaded_at``); every notice that shares the attachment reuses them.
- How long an id stays usable is not settled: DingTalk's media page says a media id is reusable
  with no expiry while the organisation exists (§5), while the portal's design (and WeCom, whose
  ids last three days) assume it expires. An id older than ``DELIVERY_MEDIA_MAX_AGE_S`` is
  therefore uploaded again before the next notice uses it: one metered call per notice at most,
  against a whole send failing on 40007 (unknown media id).
- No transaction is open during the upload: the file is read and sent first, then the id is
  stored by a conditional update (compare-and-set on the previous id), so two planners racing
  on one attachment both end up sending the id that was stored.
- Should DingTalk answer 40007 (unknown media id) to a send all the same, the send pauses the
  plan (``PauseCode.MEDIA_EXPIRED``) instead of failing its people. Resuming it (the sweeper does at
  once; a supervisor can on the dashboard) first calls :func:`renew_for_plan`, which uploads the
  file again and points the plan's unsent media messages at the new id. Nothing already
  accepted is sent again.
- Transient DingTalk errors (5xx, timeouts, throttling, an expired token) are raised unchanged
  for the caller to retry. Everything staff must fix (credentials, a revoked app or permission,
  the month's quota, a file DingTalk refuses, a missing file) is an ``ApplicationError`` with a
  message for the notice's dashboard; its ``code`` is the one ``batch_send`` pauses with, so the
  sweeper's automatic resume (``_pause_cleared``) recognises it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from accounts.channel import client_for_department
from audit.services import audit_record
from common.errors import ApplicationError
from delivery import messages
from delivery.audit_actions import DeliveryAuditAction as Action
from delivery.governor import content_fingerprint
from delivery.models import DeliveryPlan, Dispatch, PlanStatus
from dingtalk.errors import (
    DingTalkError,
    InvalidCredentials,
    MessageInvalid,
    PermissionDenied,
    QuotaExhausted,
)
from notices.models import MEDIA_KINDS, Attachment, Notice

logger = logging.getLogger("delivery.media")

# DingTalk's "invalid media id" (dingtalk-api.md §5), and the pause it causes mid-send.
UNKNOWN_MEDIA_ID = 40007
MEDIA_EXPIRED_REASON = gettext_noop(
    "DingTalk no longer knows the attachment's media id. The portal uploads the file again and "
    "resumes the notice; nothing already sent is sent again."
)


@dataclass(frozen=True)
class StoredMedia:
    media_id: str
    uploaded_at: datetime
    uploaded: bool  # True when this call uploaded the file


def max_age() -> timedelta:
    return timedelta(seconds=float(settings.DELIVERY_MEDIA_MAX_AGE_S))


def is_fresh(attachment: Attachment, *, now: datetime | None = None) -> bool:
    """Whether the attachment's stored media id can still be sent (see the module docstring)."""
    uploaded_at = attachment.dingtalk_media_uploaded_at
    if not attachment.dingtalk_media_id or uploaded_at is None:
        return False
    return (now or timezone.now()) - uploaded_at < max_age()


def ensure_media(notice: Notice | int, *, stale: Collection[str] = ()) -> StoredMedia | None:
    """Upload the notice's attachment through its department's app unless a fresh id is stored.

    An id in ``stale`` (one DingTalk refused) is never fresh. Returns None for notices that
    carry no media. Raises ApplicationError for what staff must fix; transient DingTalkErrors
    propagate for a retry. Audit: delivery.media_uploaded.
    """
    if isinstance(notice, int):
        notice = Notice.objects.select_related("department").get(pk=notice)
    if notice.kind not in MEDIA_KINDS:
        return None
    # Read afresh: a notice instance may carry an attachment loaded before another upload.
    attachment = (
        Attachment.objects.filter(pk=notice.attachment_id).first()
        if notice.attachment_id is not None
        else None
    )
    if attachment is None:
        raise ApplicationError(
            "The notice has no attachment to send; cancel it and attach the file again.",
            code="media_missing",
        )
    if attachment.media_type != notice.kind:
        raise ApplicationError(
            f"The attachment is a {attachment.media_type}, but the notice is a {notice.kind}.",
            code="media_mismatch",
        )
    if is_fresh(attachment) and attachment.dingtalk_media_id not in stale:
        notice.attachment = attachment
        return StoredMedia(
            attachment.dingtalk_media_id,
            attachment.dingtalk_media_uploaded_at or timezone.now(),
            uploaded=False,
        )
    content = _read(attachment)
    client = client_for_department(notice.department)  # ApplicationError when unconfigured
    try:
        upload = client.upload_media(attachment.media_type, attachment.original_name, content)
    except MessageInvalid as exc:
        raise ApplicationError(
            f"DingTalk does not accept this attachment ({exc.problem}).", code="media_refused"
        ) from exc
    except (InvalidCredentials, PermissionDenied, QuotaExhausted) as exc:
        raise ApplicationError(_refusal_text(exc), code=type(exc).__name__) from exc
    except DingTalkError as exc:
        if exc.is_transient:
            raise
        raise ApplicationError(
            f"DingTalk refused the attachment {attachment.original_name!r}: {exc}",
            code="media_refused",
        ) from exc
    return _store(notice, attachment, upload.media_id)


def _read(attachment: Attachment) -> bytes:
    try:
        with attachment.file.open("rb") as handle:
            return bytes(handle.read())
    except (OSError, ValueError) as exc:
        raise ApplicationError(
            f"The attachment {attachment.original_name!r} could not be read from storage.",
            code="media_unreadable",
        ) from exc


def _refusal_text(exc: DingTalkError) -> str:
    if isinstance(exc, InvalidCredentials):
        return (
            "DingTalk refused the department's app key or secret while uploading the attachment. "
            "Fix the credentials, then resume."
        )
    if isinstance(exc, QuotaExhausted):
        return "DingTalk's monthly API quota for this app is used up: the attachment was not sent."
    return (
        "DingTalk refused the attachment upload (the app is revoked, or a permission or the IP "
        "whitelist is missing)."
    )


def _store(notice: Notice, attachment: Attachment, media_id: str) -> StoredMedia:
    now = timezone.now()
    with transaction.atomic():
        # Compare-and-set: if another planner stored an id meanwhile, theirs is kept and used.
        stored = Attachment.objects.filter(
            pk=attachment.pk,
            dingtalk_media_id=attachment.dingtalk_media_id,
            dingtalk_media_uploaded_at=attachment.dingtalk_media_uploaded_at,
        ).update(dingtalk_media_id=media_id, dingtalk_media_uploaded_at=now)
        if stored == 1:
            audit_record(
                actor=None,
                action=Action.MEDIA_UPLOADED,
                target=notice,
                department=notice.department,
                data={
                    "attachment": attachment.pk,
                    "media_type": attachment.media_type,
                    "size": attachment.size,
                    "sha256": attachment.sha256,
                    "media_id": media_id,
                    "replaced": bool(attachment.dingtalk_media_id),
                },
            )
    current = Attachment.objects.get(pk=attachment.pk)
    notice.attachment = current
    if stored != 1:
        logger.info("delivery: attachment %s was uploaded by another planner", attachment.pk)
    return StoredMedia(
        current.dingtalk_media_id,
        current.dingtalk_media_uploaded_at or now,
        uploaded=stored == 1,
    )


def message_media_id(msg: Mapping[str, Any]) -> str:
    """The media id a DingTalk message names ("" for messages without media)."""
    kind = str(msg.get("msgtype", ""))
    body = msg.get(kind)
    if not isinstance(body, Mapping):
        return ""
    if kind == "oa":
        oa_body = body.get("body")
        return str(oa_body.get("image") or "") if isinstance(oa_body, Mapping) else ""
    return str(body.get("media_id") or "") if kind in ("file", "voice", "image") else ""


def renew_for_plan(plan_id: int) -> StoredMedia | None:
    """Upload a paused plan's attachment again and rebuild its media messages with the new id.

    For a plan paused with ``PauseCode.MEDIA_EXPIRED`` (DingTalk answered 40007 to a send); resuming it
    (``delivery.services.lifecycle.plan_resume``) calls this first. The upload runs outside any transaction; the
    messages are then rewritten in one, so a batch sent after the commit names the new id.
    Raises ApplicationError when the upload fails: the plan stays paused, with that reason when
    staff must act on it. Costs one metered call. Audit: the upload (delivery.media_uploaded).
    """
    plan = DeliveryPlan.objects.select_related("notice", "notice__department").get(pk=plan_id)
    notice = plan.notice
    stale = {
        media_id
        for message in Dispatch.objects.filter(plan=plan, round=0).values_list("message", flat=True)
        if (media_id := message_media_id(message))
    }
    try:
        stored = ensure_media(notice, stale=stale)
    except ApplicationError as exc:
        DeliveryPlan.objects.filter(pk=plan_id, status=PlanStatus.PAUSED).update(
            pause_reason=exc.message[:300]
        )
        raise
    except DingTalkError as exc:
        logger.warning("delivery: media upload for plan %s failed: %s", plan_id, exc)
        raise ApplicationError(
            gettext_noop("DingTalk did not answer the upload of the attachment; try again."),
            code="media_retry",
        ) from exc
    if stored is None:
        return None
    with transaction.atomic():
        for dispatch in Dispatch.objects.select_for_update().filter(plan=plan, round=0):
            if message_media_id(dispatch.message) not in stale:
                continue  # a companion text card, or a message already renewed
            message = messages.build_message(notice, dispatch.language)
            dispatch.message = message
            dispatch.content_hash = content_fingerprint(message)
            dispatch.save(update_fields=["message", "content_hash"])
    return stored
