"""Hostile recipient files, on the bulk command, the admin page and the background job (issue 16).

Each refusal: a clear message, an audiences.import_rejected event, and nothing written.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.urls import reverse

from audiences.models import ImportJob, ImportState, Recipient
from audiences.testing import csv_bytes, recipient_row, xlsx_bytes
from audit.models import AuditEvent

REJECTED = "audiences.import_rejected"


def _bulk(tmp_path: Path, cast, name: str, data: bytes) -> dict:
    path = tmp_path / name
    path.write_bytes(data)
    out = io.StringIO()
    with contextlib.suppress(CommandError):
        call_command(
            "import_recipients", str(path), department=cast.department.code, json=True, stdout=out
        )
    return json.loads(out.getvalue().strip().splitlines()[-1])


def _admin(client, cast, name: str, data: bytes):
    return client.post(
        reverse("admin:audiences_recipient_import"),
        {
            "department": cast.department.pk,
            "format": "1" if name.endswith(("xlsx", "xlsm")) else "0",
            "import_file": SimpleUploadedFile(name, data, "application/octet-stream"),
            "resource": "0",
        },
        follow=True,
    )


def _rejections() -> int:
    return AuditEvent.objects.filter(action=REJECTED).count()


def _rows(n: int, **overrides: str) -> list[dict[str, str]]:
    return [recipient_row(i, **overrides) for i in range(n)]


def _shows(response, text: str) -> None:
    body = response.content.decode()
    assert response.status_code == 200
    assert text in body, body[-3000:]
    assert "Traceback" not in body
    assert "/work/" not in body
    assert "site-packages" not in body


REFUSED_FILES = [
    pytest.param(
        "bomb.xlsx",
        lambda: xlsx_bytes(_rows(2), extra_parts={"xl/media/pad.bin": b"\0" * 3_000_000}),
        "unpacks to 2.9 MB; the limit is 1 MB",
        id="part-over-limit",
    ),
    pytest.param("macros.xlsm", lambda: xlsx_bytes(_rows(2)), "macro-enabled", id="xlsm"),
    pytest.param(
        "hidden-macros.xlsx",
        lambda: xlsx_bytes(_rows(2), extra_parts={"xl/vbaProject.bin": b"VBA"}),
        "contains macros",
        id="vba-inside-xlsx",
    ),
    pytest.param(
        "links.xlsx",
        lambda: xlsx_bytes(
            _rows(2), extra_parts={"xl/externalLinks/externalLink1.xml": b"<externalLink/>"}
        ),
        "external links",
        id="external-links",
    ),
    pytest.param(
        "renamed.xlsx", lambda: csv_bytes(_rows(2)), "is not an Excel workbook", id="csv-as-xlsx"
    ),
    pytest.param("blank.csv", lambda: b"\n\n\r\n\n", "The file is empty", id="blank-lines"),
    pytest.param("commas.csv", lambda: b",,,\n,,,\n", "The file is empty", id="blank-records"),
    pytest.param(
        "header.csv",
        lambda: b"dingtalk_user_id,name,mobile,language,district,notes\nu1,A,91234567,en,SS,x\n",
        "unknown column(s): &#x27;notes&#x27;",
        id="bad-header",
    ),
]


@override_settings(AUDIENCES_XLSX_MAX_PART_BYTES=1_048_576)
@pytest.mark.parametrize(("name", "build", "message"), REFUSED_FILES)
def test_refused_files_on_the_bulk_path(tmp_path, cast_a, name, build, message):
    report = _bulk(tmp_path, cast_a, name, build())
    assert message.replace("&#x27;", "'") in report["file_error"]
    assert not report["written"]
    assert _rejections() == 1
    assert not Recipient.objects.exists()


@override_settings(AUDIENCES_XLSX_MAX_PART_BYTES=1_048_576)
@pytest.mark.parametrize(("name", "build", "message"), REFUSED_FILES)
def test_refused_files_on_the_admin_page(cast_a, verified_client, name, build, message):
    response = _admin(verified_client(cast_a.department_admin), cast_a, name, build())
    _shows(response, message)
    assert _rejections() == 1
    assert not Recipient.objects.exists()
    assert not ImportJob.objects.exists()


@override_settings(AUDIENCES_IMPORT_MAX_BYTES=1_048_576)
def test_an_upload_over_the_size_limit_is_refused_unread(cast_a, verified_client):
    data = csv_bytes(_rows(2)) + b"#" * 3_000_000
    response = _admin(verified_client(cast_a.department_admin), cast_a, "big.csv", data)
    _shows(response, "The file is 2.9 MB; the limit is 1 MB.")
    assert _rejections() == 1
    assert not ImportJob.objects.exists()


@override_settings(
    AUDIENCES_XLSX_MAX_PART_BYTES=1_048_576, AUDIENCES_XLSX_MAX_TOTAL_BYTES=2_097_152
)
def test_the_total_unpacked_size_is_capped_too(tmp_path, cast_a):
    parts = {f"xl/media/pad{i}.bin": b"\0" * 1_000_000 for i in range(3)}
    report = _bulk(tmp_path, cast_a, "parts.xlsx", xlsx_bytes(_rows(2), extra_parts=parts))
    assert "The workbook unpacks to" in report["file_error"]
    assert _rejections() == 1


def test_rows_are_counted_from_the_data_not_the_dimension(tmp_path, cast_a, verified_client):
    data = xlsx_bytes(_rows(30), dimension="A1:E2")
    report = _bulk(tmp_path, cast_a, "lies.xlsx", data)
    assert (report["total"], report["new"], report["written"]) == (30, 30, True)
    Recipient.objects.all().delete()
    preview = verified_client(cast_a.department_admin).post(
        reverse("admin:audiences_recipient_import"),
        {
            "department": cast_a.department.pk,
            "format": "1",
            "import_file": SimpleUploadedFile("lies.xlsx", data),
            "resource": "0",
        },
    )
    assert preview.context["result"].totals["new"] == 30


@override_settings(AUDIENCES_ADMIN_SYNC_MAX_ROWS=10)
@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("cr.csv", lambda: csv_bytes(_rows(30)).replace(b"\n", b"\r")),
        ("crlf.csv", lambda: csv_bytes(_rows(30)).replace(b"\n", b"\r\n")),
        ("no-dimension.xlsx", lambda: xlsx_bytes(_rows(30), dimension=None)),
        ("lying-dimension.xlsx", lambda: xlsx_bytes(_rows(30), dimension="A1:E2")),
    ],
)
def test_any_file_above_the_threshold_becomes_a_job(
    cast_a, verified_client, django_capture_on_commit_callbacks, name, build
):
    client = verified_client(cast_a.department_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = _admin(client, cast_a, name, build())
    job = ImportJob.objects.get()
    assert response.redirect_chain[0][0] == reverse("audiences:import-job", args=["WSD", job.pk])
    assert job.state == ImportState.VALIDATED, job.errors
    assert job.counts["new"] == 30
    assert not Recipient.objects.exists()


@override_settings(AUDIENCES_ADMIN_SYNC_MAX_UNPACKED_BYTES=100_000)
def test_a_workbook_that_unpacks_large_goes_to_a_job_unparsed(
    cast_a, verified_client, django_capture_on_commit_callbacks
):
    # Five rows, but 200 kB unpacked: the request does not parse it.
    rows = _rows(5)
    data = xlsx_bytes(rows, extra_parts={"xl/media/big.bin": b"\0" * 200_000})
    with django_capture_on_commit_callbacks(execute=True):
        response = _admin(verified_client(cast_a.department_admin), cast_a, "big.xlsx", data)
    job = ImportJob.objects.get()
    assert response.redirect_chain[0][0] == reverse("audiences:import-job", args=["WSD", job.pk])
    assert job.state == ImportState.VALIDATED
    assert job.counts["new"] == 5


def _nul_rows() -> list[dict[str, str]]:
    return [
        recipient_row(0),
        recipient_row(1, dingtalk_user_id="u\x00x"),
        recipient_row(2, name="A\x00B"),
    ]


def test_nul_is_a_row_error_on_the_bulk_path(tmp_path, cast_a):
    report = _bulk(tmp_path, cast_a, "nul.csv", csv_bytes(_nul_rows()))
    errors = {e["line"]: e for e in report["errors"]}
    assert set(errors) == {3, 4}
    assert errors[3]["column"] == "dingtalk_user_id"
    assert "U+0000" in errors[3]["reason"]
    assert errors[4]["column"] == "name"
    assert "U+0000" in errors[4]["reason"]
    assert not report["written"]
    assert _rejections() == 1
    assert not Recipient.objects.exists()


def test_nul_is_a_row_error_on_the_admin_page(cast_a, verified_client):
    response = _admin(
        verified_client(cast_a.department_admin), cast_a, "nul.csv", csv_bytes(_nul_rows())
    )
    _shows(response, "Line 3, column dingtalk_user_id")
    _shows(response, "U+0000")
    assert "confirm_form" not in response.context
    assert _rejections() == 1
    assert not Recipient.objects.exists()


@override_settings(AUDIENCES_ADMIN_SYNC_MAX_ROWS=2)
def test_nul_in_a_background_job_rejects_it(
    cast_a, verified_client, django_capture_on_commit_callbacks
):
    client = verified_client(cast_a.department_admin)
    with django_capture_on_commit_callbacks(execute=True):
        _admin(client, cast_a, "nul.csv", csv_bytes(_nul_rows()))
    job = ImportJob.objects.get()
    assert job.state == ImportState.REJECTED
    assert [e["line"] for e in job.errors] == [3, 4]
    page = client.get(reverse("audiences:import-job", args=["WSD", job.pk]))
    _shows(page, "Line 4, column name")
    assert _rejections() == 1
    assert not Recipient.objects.exists()


def _odd_rows() -> list[dict[str, str]]:
    return [recipient_row(0, name="Chan\tTai\nMan"), recipient_row(1, name=" Wong\r\n Siu  Ming ")]


def test_whitespace_is_normalised_the_same_on_both_paths(tmp_path, cast_a, verified_client):
    report = _bulk(tmp_path, cast_a, "odd.csv", csv_bytes(_odd_rows()))
    assert report["written"], report
    bulk = dict(Recipient.objects.values_list("dingtalk_user_id", "name"))
    assert bulk == {"u0000000": "Chan Tai Man", "u0000001": "Wong Siu Ming"}
    Recipient.objects.all().delete()
    client = verified_client(cast_a.department_admin)
    preview = _admin(client, cast_a, "odd.csv", csv_bytes(_odd_rows()))
    client.post(
        reverse("admin:audiences_recipient_process_import"),
        {**preview.context["confirm_form"].initial},
    )
    assert dict(Recipient.objects.values_list("dingtalk_user_id", "name")) == bulk


@pytest.mark.parametrize("cell", [" =HYPERLINK(1)", "\t+1", "  @SUM(A1)", "\n-2"])
def test_formulas_behind_leading_whitespace_are_refused_on_both_paths(
    tmp_path, cast_a, verified_client, cell
):
    data = csv_bytes([recipient_row(0), recipient_row(1, name=cell)])
    report = _bulk(tmp_path, cast_a, "formula.csv", data)
    assert [(e["line"], e["column"]) for e in report["errors"]] == [(3, "name")]
    assert "spreadsheet formula" in report["errors"][0]["reason"]
    response = _admin(verified_client(cast_a.department_admin), cast_a, "formula.csv", data)
    _shows(response, "spreadsheet formula")
    assert _rejections() == 2
    assert not Recipient.objects.exists()


def test_messages_cut_long_values_and_name_foreign_numbers(tmp_path, cast_a, verified_client):
    huge = "x" * 100_000
    rows = [
        recipient_row(0, name=huge),
        recipient_row(1, district="Q" * 900),
        recipient_row(2, mobile="+86 139 1234 5678"),
    ]
    report = _bulk(tmp_path, cast_a, "long.csv", csv_bytes(rows))
    reasons = {e["line"]: e["reason"] for e in report["errors"]}
    assert "100000 characters long; the limit is 1000" in reasons[2]
    assert "Q" * 79 + "…" in reasons[3]
    assert "Q" * 81 not in reasons[3]
    assert "is not a Hong Kong number (+852)" in reasons[4]
    assert all(len(r) < 300 for r in reasons.values())
    response = _admin(verified_client(cast_a.department_admin), cast_a, "long.csv", csv_bytes(rows))
    _shows(response, "not a Hong Kong number")
    assert "x" * 100 not in response.content.decode()
    assert not Recipient.objects.exists()


def test_a_cell_beyond_what_csv_reads_refuses_the_file_with_its_line(tmp_path, cast_a):
    rows = [recipient_row(0), recipient_row(1, name="x" * 1_000_000)]
    report = _bulk(tmp_path, cast_a, "huge.csv", csv_bytes(rows))
    # Python's csv module stops at its field limit (the whole file refused, naming the line);
    # PostgreSQL's path reads the line and refuses the row. Either way: short, and line 3.
    if report["file_error"]:
        assert "Line 3 cannot be read as CSV: field larger than field limit" in report["file_error"]
        assert len(report["file_error"]) < 200
    else:
        [error] = report["errors"]
        assert (error["line"], error["column"]) == (3, "name")
        assert "1000000 characters long; the limit is 1000" in error["reason"]
    assert not report["written"]
    assert _rejections() == 1


def test_too_many_columns_is_refused_before_the_rows(tmp_path, cast_a):
    header = ",".join(f"c{i}" for i in range(500)).encode()
    report = _bulk(tmp_path, cast_a, "wide.csv", header + b"\n" + b"1," * 499 + b"1\n")
    assert "The header row has 500 columns; at most 20" in report["file_error"]
    assert _rejections() == 1
    wide = xlsx_bytes([], columns=[f"c{i}" for i in range(500)])
    report = _bulk(tmp_path, cast_a, "wide.xlsx", wide)
    assert "The header row has more than 20 columns; at most 20" in report["file_error"]
    assert _rejections() == 2


def test_the_bulk_command_without_json_prints_lines_and_columns(tmp_path, cast_a):
    path = tmp_path / "nul.csv"
    path.write_bytes(csv_bytes(_nul_rows()))
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "import_recipients", str(path), department="WSD", stdout=io.StringIO(), stderr=err
        )
    assert "Line 3, column dingtalk_user_id:" in err.getvalue()
    assert _rejections() == 1


def test_refusals_are_translated(cast_a):
    from django.utils import translation

    from audiences.importing import recipients_import

    rows = [
        recipient_row(0, name="A\x00B"),
        recipient_row(1, mobile="+86 139 1234 5678"),
        recipient_row(2, language="fr", tags="nope"),
    ]
    with translation.override("zh-hant"):
        report = recipients_import(
            actor=None, department=cast_a.department, data=csv_bytes(rows), file_name="f.csv"
        )
        refused = recipients_import(
            actor=None, department=cast_a.department, data=b"x", file_name="macro.xlsm"
        )
        shown = [str(e) for e in report.errors]
    assert shown[0].startswith("第 2 行")
    assert "name 欄" in shown[0]
    assert "控制字元" in shown[0]
    assert "U+0000" in shown[0]
    assert "不是香港號碼" in shown[1]
    assert [e.column for e in report.errors] == ["name", "mobile", "language"]
    assert "巨集" in refused.file_error
