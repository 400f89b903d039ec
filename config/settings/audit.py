"""Audit trail settings."""

from __future__ import annotations

from celery.schedules import crontab

from config.env import env_int
from config.settings.celery import Queues

# Events are kept at least a year; audit.checks refuses a lower value.
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 400)
# CSV/JSON exports up to this many rows stream in the request; larger ones (and every XLSX)
# run as a background task with a progress page.
AUDIT_EXPORT_SYNC_MAX_ROWS = env_int("AUDIT_EXPORT_SYNC_MAX_ROWS", 50_000)
AUDIT_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "audit-verify-chain": {
        "task": "audit.verify_chain",
        "schedule": crontab(hour=3, minute=30),
        "options": {"queue": Queues.BULK},
    },
}
