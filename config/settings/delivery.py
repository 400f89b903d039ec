"""Delivery settings."""

from __future__ import annotations

DELIVERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
