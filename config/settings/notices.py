"""Notices settings."""

from __future__ import annotations

NOTICES_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
