"""Cantonese voice clips made offline from a notice's Chinese text.

espeak-ng's Cantonese voice (``yue``) speaks the transcript into a WAV; ffmpeg (with the
opencore AMR-NB encoder, Debian's ``libavcodec-extra``) encodes it as DingTalk's voice messages
want it: AMR, 8 kHz mono, under 60 seconds, at most 2 MB. The same transcript always gives the
same clip, so a notice whose Chinese text did not change keeps its clip (and its DingTalk
upload). A transcript whose clip would last 60 seconds or more is refused with a message asking
for a shorter summary, which the author writes in the notice's voice summary.

Where espeak-ng or the encoder is missing, :func:`voice_available` is False and the compose page
says so; nothing else in the portal needs them.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from functools import lru_cache

from django.utils.translation import gettext as _

from common.errors import ApplicationError
from dingtalk import messages as dt

VOICE = "yue"
MAX_SECONDS = dt.MAX_VOICE_SECONDS - 1  # DingTalk: a positive integer below 60
MAX_BYTES = 2 * 1024 * 1024
MAX_TRANSCRIPT_CHARS = 1000  # far beyond 59 s of speech; refused before espeak-ng runs
TIMEOUT_S = 30
_MARKUP = re.compile(r"[#*_>`\[\]()|~]+|https?://\S+")


class VoiceUnavailable(ApplicationError):  # noqa: N818 - reads as a state
    """espeak-ng or the AMR encoder is not installed on this server."""


@dataclass(frozen=True)
class VoiceClip:
    amr: bytes
    duration_s: int
    transcript: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.amr).hexdigest()

    @property
    def file_name(self) -> str:
        # Names the transcript, so a clip can be matched with the text it was made from.
        return f"cantonese-{transcript_digest(self.transcript)}.amr"


def transcript_digest(transcript: str) -> str:
    return hashlib.sha256(transcript.encode("utf-8")).hexdigest()[:16]


def transcript_for(*, title_zh: str, body_zh: str, summary: str = "") -> str:
    """What the clip says: the author's summary if written, else the Chinese title and text,
    without markdown symbols and links."""
    source = summary.strip() or "。".join(p for p in (title_zh.strip(), body_zh.strip()) if p)
    return " ".join(_MARKUP.sub(" ", source).split())


@lru_cache(maxsize=1)
def _tools() -> tuple[str, str] | None:
    espeak = shutil.which("espeak-ng")
    ffmpeg = shutil.which("ffmpeg")
    if not espeak or not ffmpeg:
        return None
    try:
        encoders = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            [ffmpeg, "-hide_banner", "-encoders"],
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        ).stdout
        voices = subprocess.run(  # noqa: S603
            [espeak, f"--voices={VOICE}"], capture_output=True, timeout=TIMEOUT_S, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if b"libopencore_amrnb" not in encoders or VOICE.encode() not in voices:
        return None
    return espeak, ffmpeg


def voice_available() -> bool:
    return _tools() is not None


def unavailable_message() -> str:
    return _(
        "Cantonese voice clips cannot be made on this server: espeak-ng (with its Cantonese "
        "voice) or ffmpeg's AMR encoder is not installed. Notices can still be sent without one."
    )


def speak_wav(transcript: str) -> bytes:
    """The transcript spoken by espeak-ng's Cantonese voice, as WAV."""
    tools = _tools()
    if tools is None:
        raise VoiceUnavailable(unavailable_message(), code="voice_unavailable")
    if not transcript:
        raise ApplicationError(
            _("Write the Chinese text (or a voice summary) to make the voice clip from."),
            code="voice_empty",
        )
    if len(transcript) > MAX_TRANSCRIPT_CHARS:
        raise ApplicationError(too_long_message(None), code="voice_too_long")
    done = subprocess.run(  # noqa: S603 - fixed arguments; the text goes on stdin
        [tools[0], "-v", VOICE, "--stdin", "--stdout"],
        input=transcript.encode("utf-8"),
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.startswith(b"RIFF"):
        raise ApplicationError(_("The voice clip could not be made."), code="voice_failed")
    return done.stdout


def wav_seconds(wav: bytes) -> float:
    with wave.open(io.BytesIO(_fix_wav_sizes(wav))) as reader:
        frames: int = reader.getnframes()
        rate: int = reader.getframerate()
    return frames / float(rate)


def _fix_wav_sizes(wav: bytes) -> bytes:
    """espeak-ng and ffmpeg writing to a pipe leave the RIFF and data sizes unset: fill them in."""
    data_at = wav.find(b"data")
    if data_at < 0:
        return wav
    fixed = bytearray(wav)
    fixed[4:8] = (len(wav) - 8).to_bytes(4, "little")
    fixed[data_at + 4 : data_at + 8] = (len(wav) - data_at - 8).to_bytes(4, "little")
    return bytes(fixed)


def too_long_message(seconds: float | None) -> str:
    if seconds is None:
        return _(
            "The Chinese text is too long for a voice message (DingTalk takes under 60 seconds). "
            "Write a shorter voice summary."
        )
    return _(
        "The Chinese text makes a voice clip of %(s)d seconds; DingTalk takes voice messages "
        "under 60 seconds. Write a shorter voice summary."
    ) % {"s": math.ceil(seconds)}


def encode_amr(wav: bytes) -> bytes:
    tools = _tools()
    if tools is None:
        raise VoiceUnavailable(unavailable_message(), code="voice_unavailable")
    done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [
            tools[1],
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "wav",
            "-i",
            "pipe:0",
            "-ar",
            "8000",
            "-ac",
            "1",
            "-c:a",
            "libopencore_amrnb",
            "-b:a",
            "12.2k",
            "-f",
            "amr",
            "pipe:1",
        ],
        input=_fix_wav_sizes(wav),
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.startswith(b"#!AMR\n"):
        raise ApplicationError(_("The voice clip could not be made."), code="voice_failed")
    return done.stdout


def decode_to_wav(amr: bytes) -> bytes:
    """A stored clip as WAV, for the browser's player (browsers do not play AMR)."""
    tools = _tools()
    if tools is None:
        raise VoiceUnavailable(unavailable_message(), code="voice_unavailable")
    done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [
            tools[1],
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "amr",
            "-i",
            "pipe:0",
            "-f",
            "wav",
            "pipe:1",
        ],
        input=amr,
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise ApplicationError(_("The voice clip could not be played."), code="voice_failed")
    return _fix_wav_sizes(done.stdout)


def make_clip(transcript: str) -> VoiceClip:
    """The transcript as a DingTalk voice clip; refused if 60 seconds or longer, or over 2 MB."""
    wav = speak_wav(transcript)
    seconds = wav_seconds(wav)
    if seconds >= MAX_SECONDS + 1:
        raise ApplicationError(too_long_message(seconds), code="voice_too_long")
    amr = encode_amr(wav)
    if len(amr) > MAX_BYTES:
        raise ApplicationError(too_long_message(seconds), code="voice_too_long")
    return VoiceClip(amr, max(1, math.ceil(seconds)), transcript)
