"""Production settings: `check --deploy` is clean, and bad configuration stops start-up by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_ENV = {
    "DJANGO_SECRET_KEY": "k3Jq9-vXz!2pLr8sT0wYbN4cMe7hUa5dGf6iOj1QqRsTuVwXyZ_ab",
    "ALLOWED_HOSTS": "notices.example.gov.hk",
    "DATABASE_URL": "postgres://portal@127.0.0.1:5432/portal",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
}


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k not in GOOD_ENV and not k.startswith("DJANGO_")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args, "--settings=config.settings.production"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_prints_no_warnings() -> None:
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=GOOD_ENV)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DJANGO_SECRET_KEY", None, "DJANGO_SECRET_KEY"),
        ("DJANGO_SECRET_KEY", "short", "DJANGO_SECRET_KEY must be at least 50"),
        ("DATABASE_URL", None, "DATABASE_URL"),
        ("DATABASE_URL", "not a url at all", "DATABASE_URL"),
        ("DATABASE_URL", "sqlite:///tmp/x.db", "DATABASE_URL must point at PostgreSQL"),
        ("ALLOWED_HOSTS", None, "ALLOWED_HOSTS"),
        ("CELERY_BROKER_URL", None, "CELERY_BROKER_URL"),
        ("SESSION_IDLE_SECONDS", "soon", "SESSION_IDLE_SECONDS must be a whole number"),
    ],
)
def test_bad_configuration_stops_start_up_naming_the_variable(variable, value, message) -> None:
    env = dict(GOOD_ENV)
    if value is None:
        env.pop(variable, None)
    else:
        env[variable] = value
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_secret_key_can_come_from_a_file(tmp_path) -> None:
    secret = tmp_path / "key"
    secret.write_text(GOOD_ENV["DJANGO_SECRET_KEY"])
    env = {k: v for k, v in GOOD_ENV.items() if k != "DJANGO_SECRET_KEY"}
    env["DJANGO_SECRET_KEY_FILE"] = str(secret)
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stderr
