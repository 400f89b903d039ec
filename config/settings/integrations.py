"""Integrations settings: signed webhooks, CAP 1.2 alerts and the Observatory warning feed."""

from __future__ import annotations

from config.env import env_int, env_str
from config.settings.celery import Queues

# The warning summary's address; `dataType=warnsum&lang=en|tc` are added per request. Unset, the
# poller reads the DingTalk simulator's recorded feed, so `make run` and the tests never reach
# the internet; production sets the Observatory's own address (config.settings.production).
HKO_OPEN_DATA_URL = "https://data.weather.gov.hk/weatherAPI/opendata/weather.php"
INTEGRATIONS_HKO_WARNSUM_URL = env_str(
    "INTEGRATIONS_HKO_WARNSUM_URL",
    env_str("DINGTALK_BASE_URL", "http://127.0.0.1:8900").rstrip("/") + "/_sim/hko/warnsum",
)
# How often beat polls the warning summary. HKO publishes no rate limit; 15 s is the floor we allow.
INTEGRATIONS_HKO_POLL_SECONDS = max(15, env_int("INTEGRATIONS_HKO_POLL_SECONDS", 30))
INTEGRATIONS_HKO_TIMEOUT_SECONDS = env_int("INTEGRATIONS_HKO_TIMEOUT_SECONDS", 5)
# Entries last issued or updated longer ago than this are ignored (history, not news).
INTEGRATIONS_HKO_MAX_AGE_SECONDS = env_int("INTEGRATIONS_HKO_MAX_AGE_SECONDS", 6 * 3600)

# Signed requests: the signature covers "<timestamp>.<body>" and is valid this long either side.
INTEGRATIONS_SIGNATURE_WINDOW_SECONDS = 300
INTEGRATIONS_WEBHOOK_MAX_BYTES = env_int("INTEGRATIONS_WEBHOOK_MAX_BYTES", 16 * 1024)
INTEGRATIONS_CAP_MAX_BYTES = env_int("INTEGRATIONS_CAP_MAX_BYTES", 256 * 1024)
# A retiring secret keeps verifying for this long after a rotation, so callers can switch over.
INTEGRATIONS_ROTATION_GRACE_SECONDS = env_int("INTEGRATIONS_ROTATION_GRACE_SECONDS", 24 * 3600)
# Target from trigger to send, unless a department sets its own.
INTEGRATIONS_DEFAULT_TARGET_SECONDS = 300
# Requests to addresses no integration has are counted per client address in windows of this
# length, and each window is audited as one summary event; at most this many addresses are
# counted apart in a window (the rest together as "other").
INTEGRATIONS_UNKNOWN_WINDOW_SECONDS = env_int("INTEGRATIONS_UNKNOWN_WINDOW_SECONDS", 60)
INTEGRATIONS_UNKNOWN_MAX_SOURCES = env_int("INTEGRATIONS_UNKNOWN_MAX_SOURCES", 1000)

INTEGRATIONS_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "integrations.poll_warnsum": {
        "task": "integrations.poll_warnsum",
        "schedule": float(INTEGRATIONS_HKO_POLL_SECONDS),
        "options": {"queue": Queues.URGENT, "expires": float(INTEGRATIONS_HKO_POLL_SECONDS)},
    },
    "integrations.purge_nonces": {
        "task": "integrations.purge_nonces",
        # Also writes the summary of unknown-address traffic of windows that ended.
        "schedule": 300.0,
        "options": {"queue": Queues.DEFAULT},
    },
}
