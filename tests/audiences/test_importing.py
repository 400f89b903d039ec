from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from audiences.importing import recipients_import
from audiences.models import Recipient, Tag
from audiences.testing import csv_bytes, recipient_row
from audit.models import AuditEvent


def _import(cast, data: bytes, *, dry_run: bool = False, actor=None):
    return recipients_import(
        actor=actor or cast.department_admin,
        department=cast.department,
        data=data,
        file_name="list.csv",
        dry_run=dry_run,
    )


def test_dry_run_counts_and_writes_nothing(cast_a):
    report = _import(cast_a, csv_bytes(recipient_row(i) for i in range(5)), dry_run=True)
    assert report.ok
    assert (report.new, report.updated, report.unchanged) == (5, 0, 0)
    assert not report.written
    assert Recipient.objects.count() == 0
    assert not AuditEvent.objects.filter(action__startswith="audiences.").exists()


def test_real_import_then_reimport_changes_nothing(cast_a):
    data = csv_bytes(recipient_row(i) for i in range(5))
    first = _import(cast_a, data)
    assert first.written
    assert first.new == 5
    r = Recipient.objects.get(dingtalk_user_id="u0000000")
    assert r.mobile == "+85290100000"
    assert r.district.code == "CW"
    assert r.department == cast_a.department
    stamp = r.updated_at
    again = _import(cast_a, data)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 5)
    assert Recipient.objects.get(pk=r.pk).updated_at == stamp
    event = AuditEvent.objects.filter(action="audiences.imported").order_by("id").first()
    assert event.actor == cast_a.department_admin
    assert event.data["new"] == 5
    assert event.data["file_sha256"] == first.file_sha256


def test_update_counts_only_changed_rows(cast_a):
    _import(cast_a, csv_bytes(recipient_row(i) for i in range(4)))
    changed = [
        recipient_row(0, name="Renamed"),
        recipient_row(1),
        recipient_row(2, subscription="unsubscribed"),
        recipient_row(3),
    ]
    report = _import(cast_a, csv_bytes([*changed, recipient_row(9)]))
    assert (report.new, report.updated, report.unchanged) == (1, 2, 2)
    assert Recipient.objects.get(dingtalk_user_id="u0000000").name == "Renamed"
    assert Recipient.objects.get(dingtalk_user_id="u0000002").subscription_state == "unsubscribed"


def test_rejected_file_writes_nothing_and_reports_every_bad_line(cast_a):
    rows = [
        recipient_row(0),
        recipient_row(1, mobile="21234567"),
        recipient_row(2, district="Atlantis"),
        recipient_row(3, name='=HYPERLINK("http://x")'),
        recipient_row(0),
        recipient_row(5, language="fr", risk_level="extreme"),
        recipient_row(6, tags="unknown"),
    ]
    report = _import(cast_a, csv_bytes(rows))
    assert not report.ok
    assert not report.written
    assert Recipient.objects.count() == 0
    lines = {e.line: e.reason for e in report.errors}
    assert set(lines) == {3, 4, 5, 6, 7, 8}
    assert "fixed line" in lines[3]
    assert "Atlantis" in lines[4]
    assert "formula" in lines[5]
    assert "also appears on line 2" in lines[6]
    assert "language" in lines[7]
    assert "risk_level" in lines[7]
    assert "vocabulary" in lines[8]
    event = AuditEvent.objects.get(action="audiences.import_rejected")
    assert event.data["first_error_lines"] == [3, 4, 5, 6, 7, 8]
    # The trail quotes no cell: it cannot forget a person whose data is erased later.
    assert "21234567" not in str(event.data)
    assert "u0000000" not in str(event.data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"dingtalk_user_id,name,mobile,language,district\n", "no recipients"),
        (b"dingtalk_user_id,name,mobile\nu1,A,91234567\n", "missing column"),
        (
            b"dingtalk_user_id,name,mobile,language,district,shoe\nu1,A,91234567,en,SS,9\n",
            "unknown column",
        ),
        (
            "dingtalk_user_id,name,mobile,language,district\nu1,A,91234567,en,SS\nu2,陳大文,91234568,en,SS\n".encode(
                "big5"
            ),
            "Line 3 is not UTF-8",
        ),
    ],
)
def test_bad_files_get_a_clear_message(cast_a, data, message):
    report = _import(cast_a, data)
    assert message in report.file_error
    assert Recipient.objects.count() == 0


def test_wrong_cell_count_is_reported_with_its_line(cast_a):
    data = b"dingtalk_user_id,name,mobile,language,district\nu1,A,91234567,en,SS,extra\n"
    report = _import(cast_a, data)
    assert report.errors[0].line == 2
    assert "6 cells" in report.errors[0].reason


def test_tags_come_from_the_department_vocabulary(cast_a, cast_b):
    Tag.objects.create(department=cast_a.department, name="elderly")
    Tag.objects.create(department=cast_b.department, name="wheelchair")
    report = _import(
        cast_a, csv_bytes([recipient_row(1, tags="elderly"), recipient_row(2, tags="wheelchair")])
    )
    assert [e.line for e in report.errors] == [3]
    ok = _import(cast_a, csv_bytes([recipient_row(1, tags="Elderly")]))
    assert ok.written
    assert list(Recipient.objects.get().tags.values_list("name", flat=True)) == ["elderly"]
    again = _import(cast_a, csv_bytes([recipient_row(1, tags="")]))
    assert again.updated == 1
    assert not Recipient.objects.get().tags.exists()


def test_only_the_owning_department_admin_may_import(cast_a, cast_b):
    data = csv_bytes([recipient_row(1)])
    for user in (cast_a.pr_officer, cast_a.supervisor, cast_a.auditor, cast_b.department_admin):
        with pytest.raises(PermissionDenied):
            _import(cast_a, data, actor=user)
    assert Recipient.objects.count() == 0


def test_same_user_id_in_two_departments_are_two_recipients(cast_a, cast_b):
    data = csv_bytes([recipient_row(1)])
    _import(cast_a, data)
    _import(cast_b, data)
    assert Recipient.objects.filter(dingtalk_user_id="u0000001").count() == 2


def test_xlsx_files_are_read(cast_a):
    import io

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["dingtalk_user_id", "name", "mobile", "language", "district"])
    sheet.append(["x1", "Chan Tai Man", "+852 9123 4567", "zh-hant", "深水埗區"])
    sheet.append(["x2", "Lee", 61234567, "en", "KC"])
    out = io.BytesIO()
    book.save(out)
    report = recipients_import(
        actor=None,
        department=cast_a.department,
        data=out.getvalue(),
        file_name="a.xlsx",
        file_format="xlsx",
    )
    assert report.written, report.errors
    assert set(Recipient.objects.values_list("mobile", flat=True)) == {
        "+85291234567",
        "+85261234567",
    }
