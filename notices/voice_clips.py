"""A notice's Cantonese voice clip, kept in step with its Chinese text.

When a notice has ``voice_from_text`` on, every save (notices.services: create and update, after
the fields are set and before the notice is validated and its version hashed) calls
:func:`voice_apply`: the clip is made from the transcript (the voice summary, or the Chinese
title and text) and stored as the notice's voice attachment, so the clip's hash is part of the
version every approval is bound to. The notice's kind becomes ``voice``: it is sent as the voice
message followed by its text companion (delivery.messages), and uploaded to DingTalk once
(delivery.media). A clip made from the same transcript is kept as it is, with its upload.
"""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from common.errors import ApplicationError
from common.types import Actor
from notices import voice
from notices.attachments import attachment_upload
from notices.errors import NoticeInvalid
from notices.models import MessageKind, Notice


def notice_transcript(notice: Notice) -> str:
    return voice.transcript_for(
        title_zh=notice.title_zh, body_zh=notice.body_zh, summary=notice.voice_summary
    )


def clip_matches(notice: Notice) -> bool:
    """Whether the notice's attachment is the clip of its current transcript."""
    attachment = notice.attachment
    expected = f"cantonese-{voice.transcript_digest(notice_transcript(notice))}.amr"
    return (
        attachment is not None
        and attachment.media_type == MessageKind.VOICE
        and attachment.original_name == expected
    )


def voice_apply(actor: Actor, notice: Notice) -> None:
    """Make (or keep) the clip of a notice with voice_from_text; NoticeInvalid when it cannot
    be made (no espeak-ng, no Chinese text, too long)."""
    if not notice.voice_from_text:
        return
    # The voice message's text companion is a plain card: no buttons or link go with it.
    notice.kind = MessageKind.VOICE
    notice.buttons = []
    notice.link_url = notice.link_pic_url = ""
    if clip_matches(notice):
        return
    try:
        clip = voice.make_clip(notice_transcript(notice))
    except ApplicationError as exc:
        raise NoticeInvalid({"voice_summary": [exc.message]}) from exc
    notice.attachment = attachment_upload(
        actor=actor,
        department=notice.department,
        media_type=MessageKind.VOICE,
        upload=SimpleUploadedFile(clip.file_name, clip.amr, content_type="audio/amr"),
        duration_s=clip.duration_s,
    )
