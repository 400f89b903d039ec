"""Audit trail settings."""

from __future__ import annotations

from celery.schedules import crontab

from config.env import env_int, env_list, env_str
from config.settings.celery import Queues

# Events are kept at least a year; audit.checks refuses a lower value.
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 400)
# CSV/JSON exports up to this many rows stream in the request; larger ones (and every XLSX)
# run as a background task with a progress page.
AUDIT_EXPORT_SYNC_MAX_ROWS = env_int("AUDIT_EXPORT_SYNC_MAX_ROWS", 50_000)
# Where the daily anchors of the chain's head are appended (audit.anchors): outside the
# database, on append-only storage. Empty: PORTAL_VAR_DIR/audit/anchors.jsonl (config.settings.base).
AUDIT_ANCHOR_FILE = env_str("AUDIT_ANCHOR_FILE", "")
# Addresses that receive each anchor besides every department's auditors.
AUDIT_ANCHOR_EMAILS = env_list("AUDIT_ANCHOR_EMAILS", [])
AUDIT_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "audit-write-anchor": {
        "task": "audit.write_anchor",
        "schedule": crontab(hour=23, minute=50),
        "options": {"queue": Queues.BULK},
    },
    "audit-verify-chain": {
        "task": "audit.verify_chain",
        "schedule": crontab(hour=3, minute=30),
        "options": {"queue": Queues.BULK},
    },
}
