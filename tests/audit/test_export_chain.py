"""Each export checks its own chain: a department's rows, interleaved in the chain with another
department's, verify from the file alone with the script in audit/README.md ("Checking an
export on its own"), in CSV (COPY on PostgreSQL), JSON and a background CSV job; a tampered
cell, a forged bridge or a removed row fails it; the bridges carry hashes only."""

from __future__ import annotations

import csv
import importlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pgtrigger
import pytest
from django.apps import apps as django_apps
from django.db import transaction
from django.urls import reverse

from audit.actions import AuditAction
from audit.exports import export_run, export_start
from audit.models import AuditEvent
from audit.selectors import EventFilters
from audit.services import audit_record
from audit.verification import chain_verify
from common.testing.cast import verified_client_for

README = Path(__file__).resolve().parents[2] / "audit" / "README.md"
ENTRY = re.compile(r"^(\d+:[0-9a-f]{64}|\d+=[0-9a-f]{64})$")


@pytest.fixture
def check_script(tmp_path: Path) -> Path:
    """The first Python block of the README's "Checking an export on its own"."""
    section = README.read_text(encoding="utf-8").split("## Checking an export on its own")[1]
    script = section.split("```python\n")[1].split("```")[0]
    path = tmp_path / "check_export.py"
    path.write_text(script, encoding="utf-8")
    return path


def _check(script: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, check=False
    )


@pytest.fixture
def interleaved(cast_a, cast_b) -> None:
    for i in range(12):
        department = cast_a.department if i % 3 == 0 else cast_b.department
        audit_record(
            actor=None, action=AuditAction.LOGIN_FAILED, department=department, data={"i": i}
        )


def _download(client, fmt: str) -> bytes:
    response = client.post(reverse("audit:export-create"), {"format": fmt})
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_department_s_export_verifies_from_the_file_alone(
    cast_a, cast_b, interleaved, check_script, tmp_path
) -> None:
    client = verified_client_for(cast_a.auditor)
    data = _download(client, "csv")
    rows = _rows(data)
    assert {r["department"] for r in rows} == {"WSD"}
    bridged = [r for r in rows if r["bridge"]]
    assert bridged, "the other department's events lie between the rows"
    fehd = {e.sequence: e for e in AuditEvent.objects.filter(department=cast_b.department)}
    for row in bridged:
        entries = row["bridge"].split()
        assert all(ENTRY.match(e) for e in entries)  # hashes only, no content
        for entry in entries:
            sequence, content_hash = entry.split(":")
            if int(sequence) in fehd:
                assert fehd[int(sequence)].content_hash == content_hash
    path = tmp_path / "audit-trail.csv"
    path.write_bytes(data)
    result = _check(check_script, path)
    assert result.returncode == 0, result.stderr
    assert f"{len(rows)} rows verified" in result.stdout

    json_path = tmp_path / "audit-trail.json"
    json_path.write_bytes(_download(client, "json"))
    # One more row: the CSV export's own audit.exported event.
    assert len(json.loads(json_path.read_bytes())) == len(rows) + 1
    result = _check(check_script, json_path)
    assert result.returncode == 0, result.stderr


def test_a_background_export_verifies_too(
    cast_a, interleaved, check_script, settings, tmp_path
) -> None:
    settings.AUDIT_EXPORT_SYNC_MAX_ROWS = 0
    export = export_start(actor=cast_a.auditor, filters=EventFilters(), fmt="csv").background
    assert export is not None
    assert export_run(export_id=str(export.pk)) is not None
    export.refresh_from_db()
    with export.file.open("rb") as handle:
        data = handle.read()
    assert any(r["bridge"] for r in _rows(data))
    path = tmp_path / "background.csv"
    path.write_bytes(data)
    result = _check(check_script, path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("column", ["content_hash", "hash", "prev_hash", "bridge", "sequence"])
def test_a_tampered_cell_fails_the_check(
    cast_a, interleaved, check_script, tmp_path, column
) -> None:
    rows = _rows(_download(verified_client_for(cast_a.auditor), "csv"))
    victim = next(i for i, r in enumerate(rows) if i > 0 and r["bridge"])
    cell = rows[victim][column]
    if column == "sequence":
        rows[victim][column] = str(int(cell) + 1)
    elif column == "bridge":
        first, _, rest = cell.partition(" ")
        number = first.split(":")[0]
        rows[victim][column] = f"{number}:{'0' * 64} {rest}".strip()
    else:
        rows[victim][column] = ("1" if cell[0] != "1" else "2") + cell[1:]
    path = tmp_path / "tampered.csv"
    _write_rows(path, rows)
    result = _check(check_script, path)
    assert result.returncode != 0
    assert "AssertionError" in result.stderr


def test_a_removed_row_fails_the_check(cast_a, interleaved, check_script, tmp_path) -> None:
    rows = _rows(_download(verified_client_for(cast_a.auditor), "csv"))
    del rows[2]
    path = tmp_path / "short.csv"
    _write_rows(path, rows)
    result = _check(check_script, path)
    assert result.returncode != 0
    assert "not bridged" in result.stderr or "does not link" in result.stderr


def test_the_migration_fills_the_content_hashes_of_existing_events(cast_a, interleaved) -> None:
    """Migration 0007 fills the new column past the append-only trigger (pgtrigger.ignore)."""
    migration = importlib.import_module("audit.migrations.0007_event_content_hash")
    stored = dict(AuditEvent.objects.values_list("sequence", "content_hash"))
    assert all(stored.values())
    with transaction.atomic(), pgtrigger.ignore("audit.AuditEvent:append_only"):
        AuditEvent.objects.update(content_hash="")
    with transaction.atomic():
        migration.fill_content_hashes(django_apps, None)
    assert dict(AuditEvent.objects.values_list("sequence", "content_hash")) == stored
    assert chain_verify().ok
