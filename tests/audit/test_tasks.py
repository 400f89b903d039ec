"""Background exports and verification: ran twice, done once; constant-memory reading."""

from __future__ import annotations

import json

import openpyxl
import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from audit.actions import AuditAction
from audit.exports import export_chunks, export_run, export_start
from audit.models import AuditEvent, AuditExport, ExportStatus
from audit.selectors import EventFilters
from audit.services import audit_record
from audit.tasks import export_events_task, verify_chain_task
from common.errors import ApplicationError


def _roundtrip(*args):
    """Task arguments survive JSON, as they must through the broker (eager mode skips it)."""
    return json.loads(json.dumps(args))


def _background_export(cast, fmt="xlsx", **filters):
    started = export_start(actor=cast.auditor, filters=EventFilters(**filters), fmt=fmt)
    assert started.background is not None
    return started.background


def test_export_task_ran_twice_exports_once(cast_a, cast_b):
    export = _background_export(cast_a)
    (export_id,) = _roundtrip(str(export.pk))
    export_events_task.delay(export_id)
    export.refresh_from_db()
    first_file = export.file.name
    export_events_task.delay(export_id)
    export.refresh_from_db()
    assert export.status == ExportStatus.DONE
    assert export.file.name == first_file
    assert (
        AuditEvent.objects.filter(action="audit.exported", data__export_id=export_id).count() == 1
    )
    assert export_run(export_id=export_id) is None


def test_xlsx_export_contains_only_the_auditors_department(cast_a, cast_b):
    export = _background_export(cast_a)
    export_events_task.delay(str(export.pk))
    export.refresh_from_db()
    with export.file.open("rb") as handle:
        sheet = openpyxl.load_workbook(handle).worksheets[0]
    header = [c.value for c in sheet[1]]
    departments = {
        row[header.index("department")] for row in sheet.iter_rows(min_row=2, values_only=True)
    }
    assert departments == {"WSD"}
    assert sheet.max_row - 1 == export.rows_written == export.total_rows


@override_settings(AUDIT_EXPORT_SYNC_MAX_ROWS=1)
def test_export_is_pinned_to_the_chain_head_when_asked(cast_a):
    export = _background_export(cast_a, fmt="csv")
    audit_record(actor=None, action=AuditAction.DEPARTMENT_UPDATED, department=cast_a.department)
    export_events_task.delay(str(export.pk))
    export.refresh_from_db()
    newest = AuditEvent.objects.filter(
        department=cast_a.department, action=AuditAction.DEPARTMENT_UPDATED
    ).get()
    assert newest.sequence > export.head_sequence
    with export.file.open("rb") as handle:
        assert f"\r\n{newest.sequence},".encode() not in handle.read()


def test_an_export_by_someone_who_lost_the_right_fails_without_a_file(cast_a):
    export = _background_export(cast_a)
    cast_a.auditor.memberships.all().delete()
    from accounts.permissions import sync_role_permissions

    sync_role_permissions(cast_a.auditor, cast_a.department, set())
    with pytest.raises(ApplicationError, match="no longer"):
        export_events_task.delay(str(export.pk))
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED
    assert not export.file
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_streamed_export_reads_keyset_pages_lazily(cast_a):
    for i in range(35):
        audit_record(
            actor=None,
            action=AuditAction.DEPARTMENT_UPDATED,
            department=cast_a.department,
            data={"i": i},
        )
    queryset = AuditEvent.objects.filter(action=AuditAction.DEPARTMENT_UPDATED)
    # JSON (and CSV on SQLite) is written by Python from keyset pages.
    with CaptureQueriesContext(connection) as before_reading:
        chunks = export_chunks(queryset, "json", page_rows=10)
    assert len(before_reading.captured_queries) == 0  # nothing is read until the response is sent
    with CaptureQueriesContext(connection) as reading:
        body = b"".join(chunks)
    selects = [q["sql"] for q in reading.captured_queries]
    assert len(selects) == 5  # four pages of at most 10 rows, and the empty page that ends it
    assert all("LIMIT 10" in sql for sql in selects)
    assert body.count(b'"sequence": ') == 35


def test_streamed_csv_is_read_lazily(cast_a):
    for _i in range(35):
        audit_record(
            actor=None, action=AuditAction.DEPARTMENT_UPDATED, department=cast_a.department
        )
    queryset = AuditEvent.objects.filter(action=AuditAction.DEPARTMENT_UPDATED)
    with CaptureQueriesContext(connection) as before_reading:
        chunks = export_chunks(queryset, "csv", page_rows=10)
    assert len(before_reading.captured_queries) == 0
    body = b"".join(chunks)
    # PostgreSQL streams one COPY (LF line ends); SQLite's Python path writes CRLF.
    ending = b"\n" if connection.vendor == "postgresql" else b"\r\n"
    assert body.count(ending) == 36


def test_verify_task_records_the_outcome(cast_a):
    assert verify_chain_task.delay().get() is True
    event = AuditEvent.objects.get(action="audit.verified")
    assert event.data["ok"] is True
    assert event.data["head_sequence"] == event.sequence - 1


def test_export_events_task_is_on_the_bulk_queue():
    from config.settings.celery import Queues

    assert export_events_task.queue == Queues.BULK
    assert verify_chain_task.queue == Queues.BULK
    assert AuditExport._meta.get_field("head_sequence")


def test_each_task_name_is_queued_where_its_task_is_declared():
    from celery import current_app

    from audit import enqueue

    for name, queue in enqueue.TASK_QUEUES.items():
        assert current_app.tasks[name].queue == queue
