"""deploy/: the units render and verify, and they run exactly what the README documents."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from config.settings.celery import Queues

ROOT = Path(__file__).resolve().parent.parent.parent
UNITS = ROOT / "deploy" / "systemd"


def production_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Production\n", 1)[1].split("\n## ", 1)[0]


def exec_start(unit: Path) -> str:
    """The unit's command as the README writes it: no venv path, systemd's %% as %."""
    text = unit.read_text()
    command = re.search(r"^ExecStart=(.*)$", text, re.MULTILINE)
    assert command is not None, unit
    line = command.group(1).replace("@PORTAL_DIR@/.venv/bin/", "").replace("%%", "%")
    line = line.replace("@PORTAL_DIR@/", "")
    concurrency = re.search(r"^Environment=WORKER_CONCURRENCY=(\d+)$", text, re.MULTILINE)
    if concurrency:
        line = line.replace("${WORKER_CONCURRENCY}", concurrency.group(1))
    return line


def test_the_readme_shows_each_units_exact_command() -> None:
    section = production_section()
    for unit in sorted(UNITS.glob("*.service")):
        assert f"`{exec_start(unit)}`" in section, unit.name


def test_worker_units_are_the_queue_families_and_cover_every_queue() -> None:
    families = {}
    for unit in UNITS.glob("portal-worker-*.service"):
        match = re.search(r" -Q (\S+) -n (\w+)@%h ", exec_start(unit))
        assert match, unit.name
        families[match.group(2)] = tuple(match.group(1).split(","))
    assert families == Queues.FAMILIES
    assert {q for queues in families.values() for q in queues} == set(Queues.ALL)


def test_every_environment_variable_is_documented() -> None:
    names = set()
    for path in (ROOT / "config").rglob("*.py"):
        if path.name == "test.py":  # the test suite's own settings
            continue
        names |= set(
            re.findall(r'env_(?:str|int|bool|list|secret)\(\s*"([A-Z_0-9]+)"', path.read_text())
        )
        names |= set(re.findall(r'os\.environ\.get\("([A-Z_0-9]+)"', path.read_text()))
    assert "DATABASE_URL" in names
    section = production_section()
    missing = sorted(name for name in names if f"`{name}`" not in section)
    assert not missing, f"not in README's Production section: {missing}"
    template = (ROOT / "deploy" / "portal.env.template").read_text()
    for name in ("DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL"):
        assert re.search(rf"^{name}(_FILE)?=", template, re.MULTILINE), name


def test_units_render_with_every_placeholder_filled_and_verify(tmp_path) -> None:
    env_file = tmp_path / "portal.env"
    env_file.write_text((ROOT / "deploy" / "portal.env.template").read_text())
    dest = tmp_path / "units"
    result = subprocess.run(
        [str(ROOT / "deploy" / "install-units.sh"), str(dest)],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PORTAL_DIR": str(ROOT),
            "PORTAL_USER": "root",
            "PORTAL_ENV_FILE": str(env_file),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = {p.name for p in dest.iterdir()}
    assert rendered == {p.name for p in UNITS.iterdir()}
    for unit in dest.iterdir():
        assert "@PORTAL_" not in unit.read_text(), unit.name
    if shutil.which("systemd-analyze"):
        assert "the units are valid" in result.stdout
    else:
        pytest.skip("systemd-analyze is not installed: the units rendered but were not verified")


def test_install_refuses_a_unit_systemd_would_reject(tmp_path) -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed here")
    broken = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", broken)
    beat = broken / "systemd" / "portal-beat.service"
    beat.write_text(beat.read_text().replace("Restart=always", "Restart=sometimes"))
    (tmp_path / "portal.env").write_text("")
    result = subprocess.run(
        [str(broken / "install-units.sh"), str(tmp_path / "units")],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PORTAL_DIR": str(ROOT),
            "PORTAL_USER": "root",
            "PORTAL_ENV_FILE": str(tmp_path / "portal.env"),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "restart specifier" in result.stderr


def test_deploy_manage_runs_a_command_with_the_env_file_and_production_settings(tmp_path) -> None:
    env_file = tmp_path / "portal.env"
    env_file.write_text(
        "DJANGO_SECRET_KEY=k3Jq9-vXz!2pLr8sT0wYbN4cMe7hUa5dGf6iOj1QqRsTuVwXyZ_ab\n"
        "ALLOWED_HOSTS=notices.example.gov.hk\n"
        'DATABASE_URL="postgres://portal@127.0.0.1:5432/portal?sslmode=prefer&connect_timeout=3"\n'
        'CELERY_BROKER_URL="redis://127.0.0.1:6379/0"\n'
    )
    result = subprocess.run(
        [
            str(ROOT / "deploy" / "manage"),
            str(env_file),
            "check",
            "--deploy",
            "--fail-level",
            "WARNING",
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
