"""Audience settings."""

from __future__ import annotations

AUDIENCES_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
