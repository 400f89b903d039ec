"""Exports of the trail: streamed in the request when small, a background task when large or XLSX.

Both paths read the same keyset pages through the same resource, so memory stays constant
whatever the size, and each export is pinned to the chain head at the moment it was asked
for: the file shows exactly the events that existed then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import QuerySet

from accounts import permissions as perms
from audit import reports
from audit.actions import AuditOwnAction
from audit.bridges import with_bridges
from audit.export_jobs import (
    CONTENT_TYPES,
    ExportMode,
    ExportStart,
    RowCounter,
    counted,
    export_claim,
    export_file_store,
    export_finish,
    export_job_create,
    failing_export,
    progress_reporter,
    rows_file_write,
    stamped_file_name,
    sync_max_rows,
)
from audit.models import AuditEvent, AuditExport, ExportFormat
from audit.pgcopy import csv_copy_chunks
from audit.resources import AuditEventResource, export_values
from audit.selectors import EventFilters, event_list_for_user, events_filter
from audit.services import audit_record, chain_head
from audit.spreadsheets import csv_chunks, json_chunks
from common.errors import ApplicationError

PAGE_ROWS = 5000


def keyset_rows(
    queryset: QuerySet[AuditEvent], *, page_rows: int = PAGE_ROWS
) -> Iterator[dict[str, Any]]:
    """Every row of `queryset` in sequence order with its bridge (audit.bridges), one page of
    `page_rows` in memory at a time."""

    def pages() -> Iterator[list[dict[str, Any]]]:
        after = 0
        while True:
            page = list(
                export_values(queryset.filter(sequence__gt=after).order_by("sequence"))[:page_rows]
            )
            if not page:
                return
            yield page
            after = page[-1]["sequence"]

    return with_bridges(pages())


def export_chunks(
    queryset: QuerySet[AuditEvent], fmt: str, *, page_rows: int = PAGE_ROWS
) -> Iterator[bytes]:
    """The export file of `queryset` as a stream of bytes (CSV or JSON), in constant memory."""
    resource = AuditEventResource()
    if fmt == ExportFormat.CSV and connection.vendor == "postgresql":
        # Formatted and neutralised by the database (audit.pgcopy): same cells, far faster.
        return csv_copy_chunks(queryset, resource.headers())
    rows = resource.export_rows(keyset_rows(queryset, page_rows=page_rows))
    # The resource already passed every cell through neutralise_cell.
    if fmt == ExportFormat.CSV:
        return csv_chunks(resource.headers(), rows, neutralised=True)
    if fmt == ExportFormat.JSON:
        return json_chunks(resource.headers(), rows, neutralised=True)
    raise ValueError(f"{fmt} cannot be streamed; XLSX is written to a file.")


def export_file_name(fmt: str, when: Any = None) -> str:
    return stamped_file_name("audit-trail", fmt, when)


def _scoped(actor: User, filters: EventFilters, head: int) -> QuerySet[AuditEvent]:
    return events_filter(event_list_for_user(user=actor, perm=perms.EXPORT_AUDIT), filters).filter(
        sequence__lte=head
    )


def _event_department(actor: User, filters: EventFilters) -> Any:
    """The department whose trail records the export: the filtered one, or the auditor's only one."""
    departments = perms.departments_with_perm(actor, perms.EXPORT_AUDIT)
    if filters.department:
        return departments.filter(code=filters.department).first()
    only = list(departments[:2])
    return only[0] if len(only) == 1 else None


def export_start(*, actor: User, filters: EventFilters, fmt: str) -> ExportStart:
    """Start an export of the events `actor` may export, filtered by `filters`.

    Permission: EXPORT_AUDIT in at least one department (the export covers only those).
    Audit: audit.exported (format, filters, rows) before a streamed export's first byte, or
    when a background export's file is complete. Side effect: enqueues audit.export_events.
    """
    if fmt not in ExportFormat.values:
        raise ApplicationError(f"Unknown export format {fmt!r}.", field="format")
    if not perms.departments_with_perm(actor, perms.EXPORT_AUDIT).exists():
        raise ApplicationError("You may not export the audit trail.", code="forbidden")
    head, _ = chain_head()
    queryset = _scoped(actor, filters, head)
    name = export_file_name(fmt)
    if fmt != ExportFormat.XLSX:
        # A bounded count: never more than threshold + 1 rows are counted, however big the table.
        rows = queryset[: sync_max_rows() + 1].count()
        if rows <= sync_max_rows():
            audit_record(
                actor=actor,
                action=AuditOwnAction.EXPORTED,
                department=_event_department(actor, filters),
                data={
                    "format": fmt,
                    "filters": filters.as_dict(),
                    "rows": rows,
                    "mode": ExportMode.STREAMED,
                    "head_sequence": head,
                },
            )
            return ExportStart(
                file_name=name,
                content_type=CONTENT_TYPES[ExportFormat(fmt)],
                chunks=export_chunks(queryset, fmt),
            )
    export = export_job_create(actor=actor, filters=filters.as_dict(), fmt=fmt, head=head)
    return ExportStart(
        file_name=name, content_type=CONTENT_TYPES[ExportFormat(fmt)], background=export
    )


def _write_file(
    queryset: QuerySet[AuditEvent], fmt: str, path: Path, report: Callable[[int], None]
) -> int:
    """Write the export to `path`; returns the number of data rows."""
    resource = AuditEventResource()
    if fmt == ExportFormat.CSV and connection.vendor == "postgresql":
        written = [0]

        def on_rows(rows: int) -> None:
            written[0] = rows
            report(rows)

        with path.open("wb") as out:
            for chunk in csv_copy_chunks(queryset, resource.headers(), on_rows=on_rows):
                out.write(chunk)
        return written[0]
    rows = RowCounter(counted(resource.export_rows(keyset_rows(queryset)), report))
    # The resource already passed every cell through neutralise_cell.
    return rows_file_write(
        path, fmt, resource.headers(), rows, title="Audit trail", neutralised=True
    )


def export_run(*, export_id: str) -> AuditExport | None:
    """Write a background export's file, once. Returns None if this run did nothing.

    Called by the audit.export_events task, for the trail and for registered reports
    (audit.reports). Idempotent: the status claim lets one run in; a second delivery of the
    same message finds the export running or done and returns. Audit: audit.exported, in the
    same transaction that marks the export done.
    """
    if not export_claim(export_id):
        return None
    export = AuditExport.objects.select_related("requested_by").get(pk=export_id)
    if reports.is_report(export.filters):
        return reports.report_export_run(export)
    return _trail_run(export)


def _trail_run(export: AuditExport) -> AuditExport:
    """The background half of export_start (the export is already claimed)."""
    export_id = str(export.pk)
    actor = export.requested_by
    with failing_export(export_id, "Audit export"):
        if not perms.departments_with_perm(actor, perms.EXPORT_AUDIT).exists():
            raise ApplicationError("The requester may no longer export the audit trail.")
        filters = EventFilters.from_dict(export.filters)
        queryset = _scoped(actor, filters, export.head_sequence)
        AuditExport.objects.filter(pk=export_id).update(total_rows=queryset.count())
        written = export_file_store(
            export,
            export_file_name(export.format, export.requested_at),
            lambda path: _write_file(queryset, export.format, path, progress_reporter(export_id)),
        )
    return export_finish(
        export,
        rows=written,
        target=None,
        department=_event_department(actor, filters),
        data={
            "format": export.format,
            "filters": export.filters,
            "rows": written,
            "mode": ExportMode.BACKGROUND,
            "export_id": export_id,
            "head_sequence": export.head_sequence,
        },
    )
