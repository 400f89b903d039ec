"""Integrations settings."""

from __future__ import annotations

INTEGRATIONS_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
