"""Settings for a real Celery worker started by the delivery tests and benchmark.

The test settings run Celery eagerly; a real worker must not. It connects to the database
and broker the test (or benchmark) names through the environment:
DELIVERY_WORKER_DB_NAME (the test database), CELERY_BROKER_URL (Redis: a killed worker's
messages must come back), DINGTALK_BASE_URL (the simulator),
DELIVERY_GOVERNOR_URL / DELIVERY_GOVERNOR_PREFIX / DELIVERY_GOVERNOR_TIME_SCALE.
"""

from __future__ import annotations

import os

from config.settings.test import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_EAGER_PROPAGATES = False
_db_name = os.environ.get("DELIVERY_WORKER_DB_NAME")
if _db_name:
    DATABASES["default"]["NAME"] = _db_name  # noqa: F405
# A worker keeps its database connection between tasks, as in production (base settings).
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["CONN_MAX_AGE"] = 60  # noqa: F405
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # noqa: F405
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", CELERY_BROKER_URL)  # noqa: F405
# Short, so messages of a killed worker come back within the test's time.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("DELIVERY_WORKER_VISIBILITY_S", "10"))
}
# Whatever the visibility timeout, retries must stay below it.
DELIVERY_MAX_COUNTDOWN_S = 5
DELIVERY_CLAIM_STALE_S = float(os.environ.get("DELIVERY_CLAIM_STALE_S", "8"))
DELIVERY_QUEUED_STALE_S = float(os.environ.get("DELIVERY_QUEUED_STALE_S", "3"))
if os.environ.get("DELIVERY_RECIPIENTS_WINDOW_S"):
    DELIVERY_LIMITS = {
        **DELIVERY_LIMITS,  # noqa: F405
        "recipients_window_s": float(os.environ["DELIVERY_RECIPIENTS_WINDOW_S"]),
    }
