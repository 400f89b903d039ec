"""Audit trail settings."""

from __future__ import annotations

from config.env import env_int

# Events are kept at least a year; audit.checks refuses a lower value.
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 400)
AUDIT_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
