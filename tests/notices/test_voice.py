# ruff: noqa: RUF001 - full-width punctuation is correct in Traditional Chinese text
"""Cantonese voice clips made from a notice's Chinese text (espeak-ng's yue voice, AMR)."""

from __future__ import annotations

import io
import wave

import pytest

from audit.context import AuditContext, audit_context
from notices import approval, errors, services, voice
from notices.models import Approval, MessageKind, Status
from notices.testing import add_recipients, everyone_segment, submitted_notice, targeted_fields

pytestmark = pytest.mark.skipif(
    not voice.voice_available(), reason="espeak-ng (yue) or ffmpeg's AMR encoder not installed"
)
VERIFIED = AuditContext(otp_verified=True)
SENTENCE = "天文台已發出黑色暴雨警告信號，市民應留在安全地方。"


def test_voice_clip_in_cantonese_decodes_is_short_and_its_text_is_in_the_hash(cast_a):
    add_recipients(cast_a.department, 3)
    segment = everyone_segment(cast_a.department)
    notice = submitted_notice(
        cast_a.pr_officer,
        cast_a.department,
        **targeted_fields(segment, title_zh="黑色暴雨", body_zh=SENTENCE, voice_from_text=True),
    )
    clip = notice.attachment
    assert notice.kind == MessageKind.VOICE
    assert clip is not None
    data = clip.file.read()
    assert data.startswith(b"#!AMR\n")
    assert len(data) <= 2 * 1024 * 1024
    assert 0 < clip.duration_s < 60
    with wave.open(io.BytesIO(voice.decode_to_wav(data))) as decoded:
        seconds = decoded.getnframes() / decoded.getframerate()
    assert 1 < seconds < 60
    assert abs(seconds - clip.duration_s) <= 1

    with audit_context(VERIFIED):
        approval.notice_approve(
            actor=cast_a.supervisor, notice=notice, version_hash=notice.version_hash
        )
    notice.refresh_from_db()
    assert notice.status == Status.APPROVED
    # An approved notice cannot be edited; back to a submitted one with a standing approval.
    Approval.objects.filter(notice=notice).update(voided_at=None)
    type(notice).objects.filter(pk=notice.pk).update(status=Status.SUBMITTED)
    before_hash, before_clip = notice.version_hash, clip.sha256

    # Saving the same Chinese text keeps the clip (and its DingTalk upload).
    same = services.notice_update(
        actor=cast_a.pr_officer, notice=notice, changes={"body_en": "Stay safe."}
    )
    assert same.attachment_id == clip.pk

    changed = services.notice_update(
        actor=cast_a.pr_officer,
        notice=same,
        changes={"body_zh": SENTENCE + "請勿涉足水浸地方。"},
    )
    assert changed.attachment.sha256 != before_clip
    assert changed.version_hash != before_hash
    assert changed.version_hash != same.version_hash
    assert not Approval.objects.filter(notice=notice, voided_at__isnull=True).exists()


def test_voice_cantonese_clip_too_long_is_refused_or_made_from_the_summary(cast_a):
    add_recipients(cast_a.department, 1)
    segment = everyone_segment(cast_a.department)
    long_text = SENTENCE * 12
    with pytest.raises(errors.NoticeInvalid) as refused:
        services.notice_create(
            actor=cast_a.pr_officer,
            department=cast_a.department,
            **targeted_fields(segment, body_zh=long_text, voice_from_text=True),
        )
    assert "under 60 seconds" in str(refused.value.errors["voice_summary"][0])
    notice = services.notice_create(
        actor=cast_a.pr_officer,
        department=cast_a.department,
        **targeted_fields(
            segment, body_zh=long_text, voice_from_text=True, voice_summary="黑色暴雨警告生效。"
        ),
    )
    assert notice.attachment is not None
    assert notice.attachment.duration_s < 10
