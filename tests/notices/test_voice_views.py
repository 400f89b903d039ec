"""The compose page's Cantonese voice option: the player and transcript, the clip as WAV to the
notice's own department only, and a plain message where espeak-ng is missing."""

from __future__ import annotations

import pytest
from django.urls import reverse

from notices import voice
from notices.models import MessageKind, Notice
from notices.testing import add_recipients, compose_data, everyone_segment

needs_voice = pytest.mark.skipif(
    not voice.voice_available(), reason="espeak-ng (yue) or ffmpeg's AMR encoder not installed"
)


@pytest.fixture
def audience(cast_a):
    add_recipients(cast_a.department, 3)
    return everyone_segment(cast_a.department)


@pytest.fixture
def no_espeak(monkeypatch):
    """This server without espeak-ng or ffmpeg: nothing on the PATH."""
    monkeypatch.setenv("PATH", "/nonexistent")
    voice._tools.cache_clear()
    yield
    monkeypatch.undo()
    voice._tools.cache_clear()


@needs_voice
def test_compose_with_voice_shows_the_player_and_serves_the_clip(
    cast_a, cast_b, verified_client, audience
):
    client = verified_client(cast_a.pr_officer)
    url = reverse("notices:compose", args=[cast_a.department.code])
    response = client.post(
        url, compose_data(audience, voice_from_text="on", body_zh="今晚十一時至六時暫停供水。")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    notice = Notice.objects.get()
    assert notice.kind == MessageKind.VOICE
    page = client.get(reverse("notices:edit", args=[notice.pk])).content.decode()
    assert 'id="voice-audio"' in page
    assert "今晚十一時至六時暫停供水" in page
    clip = client.get(reverse("notices:voice", args=[notice.pk]))
    assert clip.status_code == 200
    assert clip["Content-Type"] == "audio/wav"
    assert clip.content.startswith(b"RIFF")
    other = verified_client(cast_b.pr_officer).get(reverse("notices:voice", args=[notice.pk]))
    assert other.status_code == 404


def test_without_espeak_compose_says_so_and_plain_notices_still_save(
    cast_a, verified_client, audience, no_espeak
):
    client = verified_client(cast_a.pr_officer)
    url = reverse("notices:compose", args=[cast_a.department.code])
    page = client.get(url).content.decode()
    assert 'id="voice-unavailable"' in page
    assert "espeak-ng" in page
    refused = client.post(url, compose_data(audience, voice_from_text="on"))
    assert refused.status_code == 200
    assert 'id="voice-error"' in refused.content.decode()
    assert not Notice.objects.exists()
    saved = client.post(url, compose_data(audience))
    assert saved.status_code == 302
    assert Notice.objects.get().kind == MessageKind.TEXT
