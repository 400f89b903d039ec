"""Developer and demo settings: the embedded default runs with no servers at all.

SQLite and Celery's file-system broker live under var/. DATABASE_URL and CELERY_BROKER_URL
switch to PostgreSQL and Redis.
"""

from __future__ import annotations

from config.env import env_bool, env_secret
from config.settings.base import *
from config.settings.base import CELERY_BROKER_URL

VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_secret(
    "DJANGO_SECRET_KEY", "insecure-local-development-key-never-used-in-production"
)
PORTAL_DEMO_MODE = env_bool("PORTAL_DEMO_MODE", True)
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

if not CELERY_BROKER_URL:
    _broker_dir = VAR_DIR / "celery" / "broker"
    CELERY_BROKER_URL = "filesystem://"
    # kombu's file-system transport with whole message files (see config/broker.py).
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        "store_processed": False,
        # Broadcast (pidbox) messages too, or kombu creates ./control in the working directory.
        "control_folder": str(VAR_DIR / "celery" / "control"),
        # config.broker takes the lowest priority first and the queues in the worker's order,
        # as Redis does with these options (config.settings.celery).
        "queue_order_strategy": "priority",
    }
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celery" / "beat-schedule")
