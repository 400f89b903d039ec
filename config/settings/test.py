"""Test settings: SQLite in memory unless DATABASE_URL points at PostgreSQL, as CI does."""

from __future__ import annotations

import os

from config.settings.base import *
from config.settings.base import CELERY_BROKER_URL, DATABASES

SECRET_KEY = "test-only-secret-key-with-enough-length-0123456789abcdef"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

if not DATABASE_URL:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    # Concurrent runs (CI and a developer, or parallel sessions) must not share a test database.
    _test_name = os.environ.get("TEST_DATABASE_NAME")
    if _test_name:
        DATABASES["default"]["TEST"] = {"NAME": _test_name}

CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://"

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
AXES_FAILURE_LIMIT = 5
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]
LOGGING = {**LOGGING, "loggers": {"axes": {"level": "ERROR"}, "django.request": {"level": "ERROR"}}}
LANGUAGE_CODE = "en"
# A plan id is reused across tests on SQLite: a figure cached by one test must not reach the next
# (tests/delivery/test_views.py turns the sharing on where it tests it).
DELIVERY_DASHBOARD_CACHE_S = 0
