"""The PostgreSQL CSV export (COPY, formatted and neutralised in SQL) gives the cells the
Python path gives, for the same events."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.db import connection
from django.utils import timezone

from audit.actions import AuditAction
from audit.context import AuditContext, audit_context
from audit.exports import export_start
from audit.models import AuditEvent
from audit.pgcopy import csv_copy_chunks
from audit.resources import AuditEventResource
from audit.selectors import EventFilters
from audit.services import audit_record
from audit.spreadsheets import FORMULA_TRIGGERS, csv_chunks
from audit.testing import tamper_event

pytestmark = pytest.mark.postgres

HOSTILE = [f"{c}cmd|' /C calc'!A0" for c in FORMULA_TRIGGERS] + [
    '  =HYPERLINK("http://x")',
    # Spaces before each kind of trigger: full-width, tab, CR, LF.
    "  \uff1dSUM(A1)",
    " \uff20x",
    "   \t1",
    " \r2",
    "  \nline",
    # Not formulas: a space before text, a trigger later on, a space that is not U+0020.
    " x",
    "a=b",
    "\u3000=1",
    "   ",
    "plain, with a comma",
    'quoted "text"',
    "two\nlines",
    "水務署 通告",
    "",
]


def _python_csv(queryset) -> list[list[str]]:
    from audit.exports import keyset_rows

    resource = AuditEventResource()
    body = b"".join(
        csv_chunks(
            resource.headers(), resource.export_rows(keyset_rows(queryset)), neutralised=True
        )
    )
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def _copy_csv(queryset) -> list[list[str]]:
    body = b"".join(csv_copy_chunks(queryset, AuditEventResource().headers()))
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


@pytest.fixture
def varied(cast_a):
    if connection.vendor != "postgresql":
        pytest.skip("COPY exists only on PostgreSQL")
    with audit_context(AuditContext(ip="2001:db8::1", otp_verified=True)):
        for i, label in enumerate(HOSTILE):
            audit_record(
                actor=cast_a.system_admin if i % 2 else None,
                action=AuditAction.DEPARTMENT_UPDATED,
                target=cast_a.department,
                target_label=label,
                actor_label=label if i % 3 == 0 else None,
                data={"label": label, "n": i, "zh": "沙田", "nested": {"b": [1, 2.5], "a": None}},
            )
    # A time on the whole second: isoformat() leaves the microseconds out then.
    on_the_second = AuditEvent.objects.order_by("-sequence").first()
    tamper_event(
        on_the_second.pk, occurred_at=timezone.now().replace(microsecond=0) - dt.timedelta(days=1)
    )
    # Data that is not an object: a bare negative number's text starts with a trigger.
    first, second, third = AuditEvent.objects.order_by("sequence")[:3]
    tamper_event(first.pk, data=-5, occurred_at=dt.datetime(1975, 7, 1, 12, 0, tzinfo=dt.UTC))
    tamper_event(second.pk, data="=text", occurred_at=timezone.now().replace(microsecond=120000))
    tamper_event(third.pk, data=[-1, "x"])
    return AuditEvent.objects.filter(department=cast_a.department)


def test_copy_gives_the_python_paths_cells(varied):
    expected = _python_csv(varied)
    got = _copy_csv(varied)
    assert len(got) == len(expected) == varied.count() + 1
    for want, have in zip(expected, got, strict=True):
        assert have == want
    assert got[0][-2:] == ["content_hash", "bridge"]


def test_copy_gives_the_python_paths_bridges(varied):
    """Rows with other events between them carry the same bridge cells in both paths."""
    sequences = list(varied.order_by("sequence").values_list("sequence", flat=True))
    every_other = varied.filter(sequence__in=sequences[::2])
    got = _copy_csv(every_other)
    assert got == _python_csv(every_other)
    assert all(row[-1] for row in got[2:])


def test_every_formula_trigger_opens_as_text(varied):
    labels = {row[9] for row in _copy_csv(varied)[1:]}
    for value in HOSTILE:
        if value.lstrip(" ")[:1] in FORMULA_TRIGGERS:
            assert "'" + value in labels
    assert "   " in labels  # spaces alone start no formula


def test_the_view_streams_copy_on_postgresql_and_counts_rows(varied, cast_a):
    started = export_start(actor=cast_a.auditor, filters=EventFilters(), fmt="csv")
    rows = _copy_csv(varied)
    body = b"".join(started.chunks or ())
    assert list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline=""))) == [
        rows[0],
        *(
            r
            for r in _copy_csv(
                AuditEvent.objects.filter(department=cast_a.department).filter(
                    sequence__lte=AuditEvent.objects.get(action="audit.exported").data[
                        "head_sequence"
                    ]
                )
            )[1:]
        ),
    ]


def test_progress_that_writes_to_the_database_is_reported_while_the_copy_runs(
    varied, cast_a, monkeypatch
):
    """A background export's progress callback updates its job row; the COPY holds the
    connection meanwhile (a report on that connection hung the export at its first one)."""
    from audit import pgcopy
    from audit.export_jobs import progress_reporter
    from audit.models import AuditExport

    monkeypatch.setattr(pgcopy, "CHUNK_BYTES", 1)
    monkeypatch.setattr(pgcopy, "PROGRESS_SECONDS", 0.0)
    job = AuditExport.objects.create(requested_by=cast_a.auditor, format="csv", head_sequence=0)
    write = progress_reporter(str(job.pk))
    seen: list[int] = []

    def on_rows(rows: int) -> None:
        write(rows)
        seen.append(rows)

    body = b"".join(csv_copy_chunks(varied, AuditEventResource().headers(), on_rows=on_rows))
    rows = varied.count()
    assert len(list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))) == rows + 1
    assert seen == [*range(1, rows + 1), rows]
    job.refresh_from_db()
    assert job.rows_written == rows


def test_an_export_abandoned_midway_leaves_the_connection_as_it_was(varied, monkeypatch):
    """A reader who goes away closes the stream in the middle of the COPY."""
    from audit import pgcopy

    monkeypatch.setattr(pgcopy, "CHUNK_BYTES", 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('TimeZone'), current_setting('work_mem')")
        settings_before = cursor.fetchone()
    chunks = csv_copy_chunks(varied, AuditEventResource().headers())
    next(chunks)  # the header
    next(chunks)  # the first row: the COPY is running
    chunks.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('TimeZone'), current_setting('work_mem')")
        assert cursor.fetchone() == settings_before
    assert AuditEvent.objects.filter(pk__in=varied.values("pk")).count() == varied.count()
    assert len(_copy_csv(varied)) == varied.count() + 1
