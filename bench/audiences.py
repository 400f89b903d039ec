"""Benchmark: recipient bulk import, rejection, segment count, changelist and the admin import path.

Needs PostgreSQL: DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal. Creates and drops its own
scratch database (bench_audiences); the CSV files go to a temporary directory. The last line printed
is one JSON object.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal .venv/bin/python bench/audiences.py [--rows 1000000] [--admin-rows 100000]

zip_bomb_refuse_s / zip_bomb_peak_mb: the bulk command refusing an XLSX of about 2 MB that unpacks
to 1.1 GB (goals: at most 1 s and 100 MB), median of three.

The bulk figures time `manage.py import_recipients FILE --department WSD --json` (called in this
process, so it reads the file itself). import_1m_quoted_s imports the same rows written the way
Excel's "CSV UTF-8" does when names hold commas (quoted cells, CRLF) into a second department,
last, so it does not change the other figures. The admin path imports --admin-rows rows for real
unless --admin-measure says fewer (its rate is then extrapolated).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = os.environ.get("BENCH_AUDIENCES_DB", "bench_audiences")  # its own name per parallel run


def require(condition: object, detail: object) -> None:
    if not condition:
        raise SystemExit(f"benchmark check failed: {detail}")


def write_csv(
    path: Path, rows: int, *, prefix: str = "u", bad_line: int | None = None, quoted: bool = False
) -> None:
    sys.path.insert(0, str(ROOT))
    from audiences.testing import DISTRICT_CODES, mobile_for

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = (
            csv.writer(handle, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
            if quoted
            else csv.writer(handle, lineterminator="\n")
        )
        writer.writerow(
            [
                "dingtalk_user_id",
                "name",
                "mobile",
                "language",
                "district",
                "function_tag",
                "risk_level",
                "subscription",
            ]
        )
        languages = ("en", "zh-hant", "both")
        functions = ("frontline", "logistics", "office", "management")
        risks = ("high", "medium", "low")
        for i in range(rows):
            mobile = "21234567" if bad_line is not None and i + 2 == bad_line else mobile_for(i)
            writer.writerow(
                [
                    f"{prefix}{i:07d}",
                    f"Chan, Person {i}" if quoted else f"Person {i}",
                    mobile,
                    languages[i % 3],
                    DISTRICT_CODES[i % 18],
                    functions[i % 4],
                    risks[(i // 7) % 3],
                    "subscribed",
                ]
            )


def write_zip_bomb(path: Path, *, unpacked: int = 1_100_000_000) -> None:
    """A real workbook whose first sheet unpacks to `unpacked` bytes of rows (about 2 MB on disk)."""
    import zipfile

    sys.path.insert(0, str(ROOT))
    from audiences.testing import xlsx_bytes

    template = zipfile.ZipFile(__import__("io").BytesIO(xlsx_bytes([])))
    row = (
        b'<row><c t="inlineStr"><is><t>u1</t></is></c><c t="inlineStr"><is><t>Person</t></is></c>'
        b'<c t="inlineStr"><is><t>90100000</t></is></c></row>'
    )
    chunk = row * (4_194_304 // len(row))
    head = (
        b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    )
    tail = b"</sheetData></worksheet>"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for item in template.infolist():
            if item.filename != "xl/worksheets/sheet1.xml":
                bomb.writestr(item.filename, template.read(item.filename))
        # A picture's worth of bytes that do not compress: the file is about 2 MB on disk.
        bomb.writestr("xl/media/image1.png", os.urandom(1_000_000))
        with bomb.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(head + chunk)
            written = len(head) + len(chunk)
            # Whitespace between the rows: valid XML, and deflate packs it about 1,000 to 1.
            padding = b" " * len(chunk)
            while written < unpacked:
                sheet.write(padding)
                written += len(padding)
            sheet.write(tail)


def zip_bomb_figures(department: str) -> dict[str, object]:
    """The bulk command refusing a 2 MB XLSX that unpacks to over 1 GB: seconds and peak memory.

    Peak memory is tracemalloc's peak of Python allocations during the refusal (what inflating the
    sheet would allocate); each of three runs is measured and the median reported. The growth of
    the process's peak resident memory over the three is reported too.
    """
    import resource
    import tracemalloc

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bomb.xlsx"
        started = time.monotonic()
        write_zip_bomb(path)
        phase("zip bomb written", started)
        seconds, peaks = [], []
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        for _ in range(3):
            tracemalloc.start()
            started = time.monotonic()
            report = import_command(path, department)
            seconds.append(time.monotonic() - started)
            peaks.append(tracemalloc.get_traced_memory()[1] / 1_048_576)
            tracemalloc.stop()
            require(not report["written"] and "unpacks to" in str(report["file_error"]), report)
        return {
            "zip_bomb_file_mb": round(path.stat().st_size / 1_048_576, 2),
            "zip_bomb_refuse_s": round(statistics.median(seconds), 3),
            "zip_bomb_peak_mb": round(statistics.median(peaks), 1),
            # How much the three refusals raised the process's peak resident memory.
            "zip_bomb_rss_growth_mb": round(
                (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024, 1
            ),
            "zip_bomb_message": str(report["file_error"]),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--admin-rows", type=int, default=100_000)
    parser.add_argument(
        "--admin-measure",
        type=int,
        default=None,
        help="Rows the admin path really imports (default: --admin-rows); the rate is reported",
    )
    parser.add_argument(
        "--no-quoted", action="store_true", help="Skip the quoted-file import (import_1m_quoted_s)"
    )
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        raise SystemExit(
            "Set DATABASE_URL to a PostgreSQL server (the benchmark measures COPY and the merge)."
        )
    base, _, _name = url.rpartition("/")
    os.environ["DATABASE_URL"] = f"{base}/{SCRATCH}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    sys.path.insert(0, str(ROOT))

    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin_conn:
        admin_conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
        admin_conn.execute(f"CREATE DATABASE {SCRATCH}")
    try:
        result = run(
            args.rows,
            args.admin_rows,
            args.admin_measure or args.admin_rows,
            quoted=not args.no_quoted,
        )
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin_conn:
            admin_conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
    print(json.dumps(result))


def phase(name: str, started: float) -> float:
    elapsed = time.monotonic() - started
    print(f"[{name}] {elapsed:.2f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    return elapsed


def import_command(path: Path, department: str) -> dict[str, object]:
    """`manage.py import_recipients FILE --department CODE --json`; its JSON report."""
    import contextlib
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = io.StringIO()
    # A rejected file ends in CommandError; its report is printed all the same.
    with contextlib.suppress(CommandError):
        call_command("import_recipients", str(path), department=department, json=True, stdout=out)
    report: dict[str, object] = json.loads(out.getvalue().strip().splitlines()[-1])
    return report


def run(rows: int, admin_rows: int, admin_measure: int, *, quoted: bool) -> dict[str, object]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    setup_test_environment()  # ALLOWED_HOSTS for the test client
    call_command("migrate", verbosity=0)

    import tablib

    from audiences.importing import recipients_import
    from audiences.models import District, Recipient
    from audiences.resources import RecipientResource
    from audiences.selectors import segment_count
    from audiences.services import SegmentInput, segment_create
    from common.testing.cast import make_cast, verified_client_for

    cast = make_cast("WSD", "Water Supplies Department", "水務署", 3003)
    department = cast.department
    out: dict[str, object] = {
        "rows": rows,
        "database": "postgresql",
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    started = time.monotonic()
    out.update(zip_bomb_figures(department.code))
    phase("zip bomb refused", started)
    with tempfile.TemporaryDirectory() as tmp:
        good, bad = Path(tmp) / "good.csv", Path(tmp) / "bad.csv"
        started = time.monotonic()
        write_csv(good, rows)
        bad_line = rows // 2
        write_csv(bad, rows, prefix="v", bad_line=bad_line)
        out["generate_s"] = round(phase("generate", started), 2)

        # The timings include reading the file, as the management command does.
        started = time.monotonic()
        report = import_command(good, department.code)
        out["import_1m_s"] = round(phase("import", started), 2)
        require(report["written"] and report["new"] == rows, report)

        started = time.monotonic()
        rejected = import_command(bad, department.code)
        out["reject_1m_s"] = round(phase("reject", started), 2)
        require(not rejected["written"] and rejected["invalid"] == 1, rejected)
        # The command prints only the counts: the line and reason come from a dry run.
        detail = recipients_import(
            actor=None,
            department=department,
            data=bad.read_bytes(),
            file_name=bad.name,
            dry_run=True,
        )
        require(
            detail.errors[0].line == bad_line and "fixed line" in detail.errors[0].reason,
            detail.errors,
        )
        require(Recipient.objects.filter(department=department).count() == rows, "check failed")
        require(
            not Recipient.objects.filter(dingtalk_user_id__startswith="v").exists(),
            "the rejected file wrote rows",
        )

        started = time.monotonic()
        again = import_command(good, department.code)
        out["reimport_1m_s"] = round(phase("reimport", started), 2)
        require(again["unchanged"] == rows, again)

    # The bulk import ANALYZEs; VACUUM (normally autovacuum, minutes later) sets the visibility map
    # that lets counts use index-only scans. Both numbers are reported.
    segment = segment_create(
        actor=None,
        department=department,
        data=SegmentInput(
            name="High-risk frontline SSP and Kowloon City",
            districts=list(District.objects.filter(code__in=["SS", "KC"])),
            function_tags=["frontline"],
            risk_levels=["high"],
        ),
    )
    everyone = segment_create(actor=None, department=department, data=SegmentInput(name="Everyone"))

    def time_count(seg: object) -> float:
        timings = []
        for _ in range(5):
            started = time.monotonic()
            segment_count(seg)  # type: ignore[arg-type]
            timings.append((time.monotonic() - started) * 1000)
        return round(statistics.median(timings), 1)

    started = time.monotonic()
    out["segment_count_before_vacuum_ms"] = time_count(segment)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Recipient._meta.db_table}")
    out["segment_count_ms"] = time_count(segment)
    out["segment_count_all_ms"] = time_count(everyone)
    out["segment_size"] = segment_count(segment)
    phase("count", started)

    client = verified_client_for(cast.department_admin)
    url = reverse("admin:audiences_recipient_changelist")
    started = time.monotonic()
    client.get(url)
    timings = []
    for _ in range(5):
        started = time.monotonic()
        response = client.get(url)
        timings.append((time.monotonic() - started) * 1000)
        require(response.status_code == 200, "check failed")
    out["changelist_ms"] = round(statistics.median(timings), 1)
    phase("changelist", started)

    from audiences.testing import recipient_row

    dataset = tablib.Dataset(
        headers=[
            "dingtalk_user_id",
            "name",
            "mobile",
            "language",
            "district",
            "function_tag",
            "risk_level",
            "subscription",
        ]
    )
    for i in range(admin_measure):
        row = recipient_row(i)
        dataset.append(
            [
                f"a{i:07d}",
                row["name"],
                row["mobile"],
                row["language"],
                row["district"],
                row["function_tag"],
                row["risk_level"],
                "subscribed",
            ]
        )
    resource = RecipientResource(
        department=department, user=cast.department_admin, full_contact=True
    )
    started = time.monotonic()
    result = resource.import_data(
        dataset, dry_run=False, rollback_on_validation_errors=True, file_name="admin.csv"
    )
    elapsed = phase("admin import", started)
    require(not result.has_errors() and not result.has_validation_errors(), "admin import failed")
    # The rate is over the rows really imported; when that is a slice of admin_rows (a quicker
    # run), the time for admin_rows is extrapolated from it. Both sizes are in the JSON.
    out["admin_import_rows_measured"] = admin_measure
    out["admin_import_rows_target"] = admin_rows
    out["admin_import_s"] = round(elapsed, 1)
    out["admin_import_rows_per_s"] = round(admin_measure / elapsed, 1)
    out["admin_import_extrapolated_s"] = round(admin_rows * elapsed / admin_measure, 1)

    if quoted:
        # Another department: a million more rows in WSD's would change nothing measured above,
        # but the import must be of new rows, like import_1m_s.
        other = make_cast(
            "FEHD", "Food and Environmental Hygiene Department", "食物環境衞生署", 3002
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "quoted.csv"
            write_csv(path, rows, prefix="q", quoted=True)
            started = time.monotonic()
            report = import_command(path, other.department.code)
            out["import_1m_quoted_s"] = round(phase("quoted import", started), 2)
            require(report["written"] and report["new"] == rows, report)
            sample = Recipient.objects.get(dingtalk_user_id="q0000007")
            require(sample.name == "Chan, Person 7", sample.name)
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


if __name__ == "__main__":
    main()
