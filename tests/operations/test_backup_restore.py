"""The README's backup and restore, on PostgreSQL: the restored trail verifies, anchors too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connection

from audit.anchors import anchor_write
from audit.models import AuditEvent

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed"
    return path


def pg_env() -> dict[str, str]:
    params = connection.settings_dict
    env = {**os.environ, "PGHOST": str(params["HOST"] or "127.0.0.1")}
    env["PGPORT"] = str(params["PORT"] or 5432)
    env["PGUSER"] = str(params["USER"] or "postgres")
    if params["PASSWORD"]:
        env["PGPASSWORD"] = str(params["PASSWORD"])
    return env


def test_a_restored_backup_passes_audit_verify_and_its_anchors(
    transactional_db, cast_a, settings, tmp_path
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "backup and restore use pg_dump and pg_restore: run on PostgreSQL (DATABASE_URL)"
        )
    if not shutil.which("pg_dump"):
        pytest.skip("pg_dump is not installed here")
    settings.AUDIT_ANCHOR_FILE = str(tmp_path / "anchors.jsonl")
    anchor_write()
    env = pg_env()
    source = str(connection.settings_dict["NAME"])
    restored = f"restore_{uuid.uuid4().hex[:8]}"
    dump = tmp_path / "portal.dump"
    # The README's commands: a custom-format dump, then a restore into an empty database.
    subprocess.run(
        [tool("pg_dump"), "--format=custom", f"--file={dump}", source], env=env, check=True
    )
    subprocess.run([tool("createdb"), restored], env=env, check=True)
    try:
        subprocess.run(
            [
                tool("pg_restore"),
                "--no-owner",
                "--exit-on-error",
                f"--dbname={restored}",
                str(dump),
            ],
            env=env,
            check=True,
        )
        host, port, user = env["PGHOST"], env["PGPORT"], env["PGUSER"]
        verify = subprocess.run(
            [sys.executable, "manage.py", "audit_verify", "--anchors"],
            cwd=ROOT,
            env={
                **env,
                "DJANGO_SETTINGS_MODULE": "config.settings.local",
                "DATABASE_URL": f"postgres://{user}@{host}:{port}/{restored}",
                "AUDIT_ANCHOR_FILE": settings.AUDIT_ANCHOR_FILE,
                "PORTAL_VAR_DIR": str(tmp_path / "var"),
            },
            capture_output=True,
            text=True,
            check=False,
        )
        assert verify.returncode == 0, verify.stderr
        assert f"{AuditEvent.objects.count()} events" in verify.stdout
        assert "1 daily anchors agree" in verify.stdout
    finally:
        subprocess.run([tool("dropdb"), "--if-exists", restored], env=env, check=False)
