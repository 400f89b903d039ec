"""Audience settings: import limits, directory sync pacing and its schedule."""

from __future__ import annotations

from config.env import env_int

# Whole-file limits for every recipient import path (admin, background job, bulk command).
AUDIENCES_IMPORT_MAX_BYTES = env_int("AUDIENCES_IMPORT_MAX_BYTES", 200 * 1024 * 1024)
AUDIENCES_IMPORT_MAX_ROWS = env_int("AUDIENCES_IMPORT_MAX_ROWS", 1_000_000)
# Above this many rows an admin upload is checked and imported by a Celery task with a progress bar.
AUDIENCES_ADMIN_SYNC_MAX_ROWS = env_int("AUDIENCES_ADMIN_SYNC_MAX_ROWS", 2_000)
# Venue and check-in CSV files.
AUDIENCES_CHECKIN_MAX_ROWS = env_int("AUDIENCES_CHECKIN_MAX_ROWS", 200_000)
# DingTalk allows 20 calls/s per app and API; stay well under it so a sync never trips 90018.
AUDIENCES_SYNC_CALLS_PER_SECOND = env_int("AUDIENCES_SYNC_CALLS_PER_SECOND", 10)

AUDIENCES_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
