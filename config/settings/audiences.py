"""Audience settings: import limits, directory sync pacing and its schedule."""

from __future__ import annotations

from config.env import env_int, env_str
from config.settings.celery import Queues

# Whole-file limits for every recipient import path (admin, background job, bulk command).
AUDIENCES_IMPORT_MAX_BYTES = env_int("AUDIENCES_IMPORT_MAX_BYTES", 200 * 1024 * 1024)
AUDIENCES_IMPORT_MAX_ROWS = env_int("AUDIENCES_IMPORT_MAX_ROWS", 1_000_000)
AUDIENCES_IMPORT_MAX_COLUMNS = env_int("AUDIENCES_IMPORT_MAX_COLUMNS", 20)
# A longer cell is a row error (no column of ours needs more; messages quote 80 characters).
AUDIENCES_IMPORT_MAX_CELL_CHARS = env_int("AUDIENCES_IMPORT_MAX_CELL_CHARS", 1_000)
# An XLSX file is a zip: checked against its directory before anything is unpacked.
AUDIENCES_XLSX_MAX_PART_BYTES = env_int("AUDIENCES_XLSX_MAX_PART_BYTES", 256 * 1024 * 1024)
AUDIENCES_XLSX_MAX_TOTAL_BYTES = env_int("AUDIENCES_XLSX_MAX_TOTAL_BYTES", 512 * 1024 * 1024)
# Above this many rows an admin upload is checked and imported by a Celery task with a progress bar.
AUDIENCES_ADMIN_SYNC_MAX_ROWS = env_int("AUDIENCES_ADMIN_SYNC_MAX_ROWS", 2_000)
# An XLSX upload that unpacks to more than this goes to a job without being parsed in the request.
AUDIENCES_ADMIN_SYNC_MAX_UNPACKED_BYTES = env_int(
    "AUDIENCES_ADMIN_SYNC_MAX_UNPACKED_BYTES", 16 * 1024 * 1024
)
# PostgreSQL memory for checking a bulk file in SQL (audiences.pgimport): the session's buffers
# for temporary tables (kept by that connection afterwards) and the duplicate-id sort.
AUDIENCES_IMPORT_TEMP_BUFFERS = env_str("AUDIENCES_IMPORT_TEMP_BUFFERS", "512MB")
AUDIENCES_IMPORT_WORK_MEM = env_str("AUDIENCES_IMPORT_WORK_MEM", "256MB")
# Venue and check-in CSV files.
AUDIENCES_CHECKIN_MAX_ROWS = env_int("AUDIENCES_CHECKIN_MAX_ROWS", 200_000)
# DingTalk allows 20 calls/s per app and API; stay well under it so a sync never trips 90018.
AUDIENCES_SYNC_CALLS_PER_SECOND = env_int("AUDIENCES_SYNC_CALLS_PER_SECOND", 10)

# An import job or sync still "running" this long after its worker claimed it has lost its worker:
# longer than every audiences task's hard time limit (1900 s, 3100 s), so a live one is never hit.
AUDIENCES_STALE_WORK_AFTER_S = env_int("AUDIENCES_STALE_WORK_AFTER_S", 2 * 3600)

AUDIENCES_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "audiences-sweep-stale-work": {
        "task": "audiences.sweep_stale_work",
        "schedule": 600.0,
        "options": {"queue": Queues.DEFAULT},
    },
    "audiences-reconcile-followers": {
        "task": "audiences.reconcile_followers",
        "schedule": 600.0,
        "options": {"queue": Queues.BULK},
    },
}
