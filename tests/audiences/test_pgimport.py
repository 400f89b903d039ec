"""The PostgreSQL check of bulk files agrees with the Python (libphonenumber) rules it stands for."""

from __future__ import annotations

import json
import random

import pytest
from django.db import connection

from audiences.pgimport import hk_mobile_prefixes, hk_mobile_sql_pattern
from audiences.validation import normalise_hk_mobile


def _sample_numbers() -> list[str]:
    rng = random.Random(852)
    numbers = [f"{p:04d}{rng.randrange(10_000):04d}" for p in range(10_000)]  # every prefix
    numbers += [f"{rng.randrange(10**8):08d}" for _ in range(20_000)]
    numbers += ["9123456", "912345678", "9123 4567", "+85291234567", "٩١٢٣٤٥٦٧", "9123456a", ""]
    return numbers


@pytest.mark.postgres
def test_sql_mobile_check_agrees_with_phonenumbers(db):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: the SQL mobile check runs there")
    numbers = _sample_numbers()
    prefixes = json.dumps(dict.fromkeys(hk_mobile_prefixes(), 1))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n, octet_length(n) = 8 AND translate(n, '0123456789', '') = ''"
            " AND %s::jsonb ? left(n, 4), n ~ %s FROM unnest(%s::text[]) n",
            [prefixes, hk_mobile_sql_pattern(), numbers],
        )
        rows = cursor.fetchall()
    assert len(rows) == len(numbers)
    disagreements = []
    for number, by_prefix, by_pattern in rows:
        # The SQL fast path only accepts bare 8-digit numbers; the library decides the rest.
        python = normalise_hk_mobile(number) if len(number) == 8 and number.isascii() else None
        if by_prefix != (python is not None) or by_pattern != by_prefix:
            disagreements.append((number, by_prefix, by_pattern, python))
    assert not disagreements, disagreements[:10]
    assert sum(1 for _n, ok, _p in rows if ok) > 1000  # the sample holds plenty of mobiles


def test_mobile_prefixes_come_from_the_library():
    prefixes = set(hk_mobile_prefixes())
    assert "9123" in prefixes  # 9123 xxxx is a mobile range
    assert "2123" not in prefixes  # 2xxx is fixed line
    for prefix in sorted(prefixes)[::97]:
        assert normalise_hk_mobile(prefix + "4321") == f"+852{prefix}4321"


# --- the SQL path against the Python path, file by file ---------------------------------------

HEADER = "dingtalk_user_id,name,mobile,language,district,function_tag,risk_level,subscription"
TRICKY_FILES = {
    "plain": HEADER + "\nu1,Chan Tai Man,91234567,en,SS,frontline,high,subscribed\n"
    "u2,Lee,61234567,zh-hant,kc,,low,no\n",
    "quoted everywhere, commas and quotes inside": HEADER.replace(",", '","').join('""')
    + '\n"u1","Chan, Tai Man","91234567","en","SS","frontline","high","subscribed"'
    + '\n"u2","Wong ""Ah"" Ming","+852 6123 4567","both","深水埗區","","",""\n',
    "some cells quoted, CRLF, blank and comma-only lines": HEADER + "\r\n"
    'u1,"Chan Tai Man",91234567,en,SS,frontline,high,subscribed\r\n'
    "\r\n,,,,,,,\r\n"
    'u2,"Lee, Siu Ming",61234567,zh,KC,office,medium,yes\r\n\r\n',
    "duplicates in every order": HEADER + "\nu1,A,91234567,en,SS,,,\nu2,B  B,91234568,en,SS,,,"
    "\nu1,C,91234569,en,SS,,,\nu2,D,91234560,en,SS,,,\n u3,E,91234561,en,SS,,,"
    "\nu3,F,91234562,en,SS,,,\nu4,G,91234563,en,SS,,,\nu4,H\u3000H,91234564,en,SS,,,"
    "\nu5,=bad,91234565,en,SS,,,\nu5,Fine,91234566,en,SS,,,\nu6,Ok,91234567,en,SS,,,"
    "\nu6,Ok,2123,en,SS,,,\n",
    "every kind of bad cell": HEADER + '\nu1,"=HYPERLINK(""x"")",91234567,en,SS,,,'
    "\nu2, Lee ,91234567,en,SS,,,\nu3,Lee\u00a0Ka,21234567,en,SS,,,\nu4,Ng,9123456,fr,XX,,,"
    "\nu5,Ho,91234567,en,SS,-x,extreme,maybe\nu6,Yu,91234567,en,SS,Front Line,,"
    "\nu7,Ko,91234567,en\nu8,Ip,91234567,en,SS,,,,extra\nbad id,Ma,91234567,en,SS,,,"
    "\n" + "u9," + "N" * 101 + ",91234567,en,SS,,,\n",
    "quoted file whose record spans two lines": HEADER
    + '\nu1,"Chan\nTai Man",91234567,en,SS,,,\nu2,Lee,61234567,en,KC,,,\n',
    "quoted with a bad row": HEADER
    + '\n"u1","Chan",91234567,en,SS,,,\n"u2","Lee","2123 4567",en,KC,,,'
    '\n"u3","Ho, K",91234567,"en","SS","x",low,""\n',
    "tags and a header in another order": "tags,district,name,dingtalk_user_id,language,mobile\n"
    "volunteer;elderly,SS,Chan,u1,en,91234567\n,KC,Lee,u2,en,61234567\n"
    "elderly;elderly,KC,Ho,u3,en,61234568\nElderly,KC,Yu,u4,en,61234569\n",
}


def _python_path(department, data: bytes):
    """What the Python path makes of a file: its report, and (if clean) the rows it writes."""
    from audiences import importing

    report = importing.ImportReport(file_name="f.csv", file_sha256="", dry_run=False)
    checked = importing.check_file(
        department=department,
        data=data,
        file_format="csv",
        report=report,
        max_rows=1000,
        progress=None,
    )
    if checked is not None and report.ok:
        importing.write_checked(actor=None, department=department, checked=checked, report=report)
    return report


def _snapshot(department):
    from audiences.models import Recipient

    return sorted(
        (
            r.dingtalk_user_id,
            r.name,
            r.mobile,
            r.language,
            r.district_id,
            r.function_tag,
            r.risk_level,
            r.subscription_state,
            tuple(sorted(r.tags.values_list("name", flat=True))),
        )
        for r in Recipient.objects.filter(department=department)
    )


@pytest.mark.postgres
@pytest.mark.parametrize("name", list(TRICKY_FILES))
def test_sql_path_reports_and_writes_what_the_python_path_does(name, cast_a, cast_b):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: the SQL path runs there")
    from audiences.importing import ImportReport, recipients_import, sql_checkable_text
    from audiences.models import Tag

    for department in (cast_a.department, cast_b.department):
        for tag in ("volunteer", "elderly"):
            Tag.objects.create(department=department, name=tag)
    data = TRICKY_FILES[name].encode()
    checkable = sql_checkable_text(data, "csv", ImportReport("f.csv", "", dry_run=False))
    assert (checkable is not None) == ("two lines" not in name)  # that one is the Python path's
    by_sql = recipients_import(
        actor=None, department=cast_a.department, data=data, file_name="f.csv"
    )
    by_python = _python_path(cast_b.department, data)
    assert [(e.line, e.reason) for e in by_sql.errors] == [
        (e.line, e.reason) for e in by_python.errors
    ]
    assert (by_sql.total, by_sql.error_count, by_sql.file_error) == (
        by_python.total,
        by_python.error_count,
        by_python.file_error,
    )
    assert (by_sql.new, by_sql.updated, by_sql.unchanged, by_sql.written) == (
        by_python.new,
        by_python.updated,
        by_python.unchanged,
        by_python.written,
    )
    assert _snapshot(cast_a.department) == _snapshot(cast_b.department)
    if by_sql.written:
        again = recipients_import(
            actor=None, department=cast_a.department, data=data, file_name="f.csv"
        )
        assert (again.new, again.updated) == (0, 0)


def test_quoted_records_keep_csv_readers_cells_and_lines():
    from audiences.pgimport import RECORD_SEPARATOR, quoted_records_text

    text = 'a,b\n"x, y","say ""hi"""\n\n"",\n'
    assert quoted_records_text(text) == RECORD_SEPARATOR.join(["a", "b"]) + "\n" + (
        RECORD_SEPARATOR.join(["x, y", 'say "hi"']) + "\n\n" + RECORD_SEPARATOR + "\n"
    )
    assert quoted_records_text('a,b\n"x\ny",z\n') is None  # a record over two lines
    assert quoted_records_text(f"a,b\nx{RECORD_SEPARATOR},y\n") is None
    assert quoted_records_text('a,b\n"x",\\.\n') is None
