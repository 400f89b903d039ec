"""Health endpoints: live answers always; ready checks every dependency and names what fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent.parent
CLOSED = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def anonymous() -> Client:
    return Client()


def test_live_answers_without_login_and_without_the_database(anonymous) -> None:
    response = anonymous.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert anonymous.get("/health/").status_code == 200


@pytest.mark.django_db
def test_ready_lists_every_dependency_when_all_are_up(anonymous) -> None:
    response = anonymous.get("/health/ready")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert set(body["checks"]) == {"database", "migrations", "broker", "cache", "governor"}
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_ready_names_an_unreachable_governor_store_and_leaks_no_address(
    anonymous, settings
) -> None:
    settings.DELIVERY_GOVERNOR_URL = "redis://:s3cret-pw@127.0.0.1:1/0"
    response = anonymous.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["governor"]
    assert b"s3cret" not in response.content
    assert b"127.0.0.1" not in response.content


@pytest.mark.django_db
def test_ready_names_an_unreachable_cache(anonymous, settings) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CLOSED}
    }
    response = anonymous.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["cache"]
    assert response.json()["checks"]["cache"] == "ConnectionError"


@pytest.mark.django_db
def test_ready_names_an_unreachable_broker(anonymous, settings) -> None:
    settings.CELERY_BROKER_URL = CLOSED
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    settings.DELIVERY_GOVERNOR_URL = "db"  # else it follows the broker's address
    response = anonymous.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]


@pytest.mark.django_db
def test_ready_names_unapplied_migrations(anonymous) -> None:
    recorder = MigrationRecorder(connection)
    latest = recorder.migration_qs.filter(app="delivery").order_by("-id").first()
    assert latest is not None
    latest.delete()
    response = anonymous.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["migrations"]
    assert body["checks"]["migrations"] == "1 migrations not applied"


def test_ready_is_exempt_from_the_https_redirect_in_production() -> None:
    """Production redirects everything to HTTPS except the load balancer's probes."""
    code = (
        "import django;django.setup();from django.conf import settings;"
        "from django.middleware.security import SecurityMiddleware as S;"
        "from django.test import RequestFactory as R;"
        "m=S(lambda r:None);f=R();"
        "print(m.process_request(f.get('/health/live',HTTP_HOST='notices.example.gov.hk')),"
        "m.process_request(f.get('/notices/',HTTP_HOST='notices.example.gov.hk')).status_code)"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "k3Jq9-vXz!2pLr8sT0wYbN4cMe7hUa5dGf6iOj1QqRsTuVwXyZ_ab",
        "ALLOWED_HOSTS": "notices.example.gov.hk",
        "DATABASE_URL": "postgres://portal@127.0.0.1:5432/portal",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "301"]


def test_celery_health_names_every_family_without_workers(tmp_path) -> None:
    """No worker listens on a fresh in-memory broker: every family is named, exit 1."""
    result = subprocess.run(
        [sys.executable, "manage.py", "celery_health", "--timeout", "0.5", "--json"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "CELERY_BROKER_URL": "memory://",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report == {"families": {"urgent": [], "send": [], "receipts": [], "bulk": []}}
    assert "urgent, send, receipts, bulk" in result.stderr
