"""Exports of the trail: streamed in the request when small, a background task when large or XLSX.

Both paths read the same keyset pages through the same resource, so memory stays constant
whatever the size, and each export is pinned to the chain head at the moment it was asked
for: the file shows exactly the events that existed then.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts import permissions as perms
from audit import receipts
from audit.actions import AuditOwnAction
from audit.context import AuditContext, audit_context, current_context
from audit.models import AuditEvent, AuditExport, ExportFormat, ExportStatus
from audit.pgcopy import csv_copy_chunks
from audit.resources import AuditEventResource, export_values
from audit.selectors import EventFilters, event_list_for_user, events_filter
from audit.services import audit_record, chain_head
from audit.spreadsheets import csv_chunks, json_chunks, write_xlsx
from common.errors import ApplicationError

logger = logging.getLogger(__name__)

PAGE_ROWS = 5000
PROGRESS_EVERY = 5000
# A running export that has not reported progress for this long is presumed dead and may be reclaimed.
STALE_AFTER_SECONDS = 15 * 60

CONTENT_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSON: "application/json",
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def sync_max_rows() -> int:
    return int(getattr(settings, "AUDIT_EXPORT_SYNC_MAX_ROWS", 50_000))


def keyset_rows(
    queryset: QuerySet[AuditEvent], *, page_rows: int = PAGE_ROWS
) -> Iterator[dict[str, Any]]:
    """Every row of `queryset` in sequence order, one page of `page_rows` in memory at a time."""
    after = 0
    while True:
        page = list(
            export_values(queryset.filter(sequence__gt=after).order_by("sequence"))[:page_rows]
        )
        if not page:
            return
        yield from page
        after = page[-1]["sequence"]


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
    stamp = timezone.localtime(when).strftime("%Y%m%d-%H%M%S")
    return f"audit-trail-{stamp}.{fmt}"


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


@dataclass(frozen=True)
class ExportStart:
    """Either a stream to send now, or a background export to follow."""

    file_name: str
    content_type: str
    chunks: Iterator[bytes] | None = None
    background: AuditExport | None = None


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
                    "mode": "streamed",
                    "head_sequence": head,
                },
            )
            return ExportStart(
                file_name=name,
                content_type=CONTENT_TYPES[ExportFormat(fmt)],
                chunks=export_chunks(queryset, fmt),
            )
    export = _export_enqueue(actor=actor, filters=filters, fmt=fmt, head=head)
    return ExportStart(
        file_name=name, content_type=CONTENT_TYPES[ExportFormat(fmt)], background=export
    )


@transaction.atomic
def _export_enqueue(
    *, actor: User, filters: EventFilters | dict[str, Any], fmt: str, head: int
) -> AuditExport:
    from audit.tasks import export_events_task

    export = AuditExport.objects.create(
        requested_by=actor,
        request_id=current_context().request_id,
        format=fmt,
        filters=filters.as_dict() if isinstance(filters, EventFilters) else filters,
        head_sequence=head,
    )
    export_id = str(export.pk)
    transaction.on_commit(lambda: export_events_task.delay(export_id))
    return export


def _claim(export_id: str) -> bool:
    """Atomically move the export to RUNNING; False if another run has it or it is finished."""
    now = timezone.now()
    stale = now - dt.timedelta(seconds=STALE_AFTER_SECONDS)
    claimed = (
        AuditExport.objects.filter(pk=export_id)
        .filter(
            Q(status=ExportStatus.PENDING) | Q(status=ExportStatus.RUNNING, heartbeat_at__lt=stale)
        )
        .update(status=ExportStatus.RUNNING, heartbeat_at=now, rows_written=0)
    )
    return claimed == 1


def _progress(export_id: str) -> Callable[[int], None]:
    def report(rows: int) -> None:
        AuditExport.objects.filter(pk=export_id).update(
            rows_written=rows, heartbeat_at=timezone.now()
        )

    return report


def _counted(rows: Iterator[list[Any]], report: Callable[[int], None]) -> Iterator[list[Any]]:
    for written, row in enumerate(rows, start=1):
        yield row
        if written % PROGRESS_EVERY == 0:
            report(written)


def _write_file(
    queryset: QuerySet[AuditEvent], fmt: str, path: Path, report: Callable[[int], None]
) -> int:
    """Write the export to `path`; returns the number of data rows."""
    resource = AuditEventResource()
    if fmt == ExportFormat.CSV and connection.vendor == "postgresql":
        written = [0]

        def counted(rows: int) -> None:
            written[0] = rows
            report(rows)

        with path.open("wb") as out:
            for chunk in csv_copy_chunks(queryset, resource.headers(), on_rows=counted):
                out.write(chunk)
        return written[0]
    rows = _RowCounter(_counted(resource.export_rows(keyset_rows(queryset)), report))
    if fmt == ExportFormat.XLSX:
        write_xlsx(path, resource.headers(), rows, title="Audit trail")
        return rows.count
    writer = csv_chunks if fmt == ExportFormat.CSV else json_chunks
    chunks = writer(resource.headers(), rows, neutralised=True)
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
    return rows.count


class _RowCounter:
    def __init__(self, rows: Iterator[list[Any]]) -> None:
        self.rows = rows
        self.count = 0

    def __iter__(self) -> Iterator[list[Any]]:
        for row in self.rows:
            self.count += 1
            yield row


def export_run(*, export_id: str) -> AuditExport | None:
    """Write a background export's file, once. Returns None if this run did nothing.

    Called by the audit.export_events task. Idempotent: the status claim lets one run in;
    a second delivery of the same message finds the export running or done and returns.
    Audit: audit.exported, in the same transaction that marks the export done.
    """
    if not _claim(export_id):
        return None
    export = AuditExport.objects.select_related("requested_by").get(pk=export_id)
    if export.filters.get(receipts.REPORT_KEY) == receipts.REPORT_RECEIPTS:
        return _receipts_run(export)
    actor = export.requested_by
    try:
        if not perms.departments_with_perm(actor, perms.EXPORT_AUDIT).exists():
            raise ApplicationError("The requester may no longer export the audit trail.")
        filters = EventFilters.from_dict(export.filters)
        queryset = _scoped(actor, filters, export.head_sequence)
        total = queryset.count()
        AuditExport.objects.filter(pk=export_id).update(total_rows=total)
        with tempfile.TemporaryDirectory(prefix="audit-export-") as tmp:
            path = Path(tmp) / export_file_name(export.format, export.requested_at)
            rows = _write_file(queryset, export.format, path, _progress(export_id))
            with path.open("rb") as handle:
                export.file.save(path.name, File(handle), save=False)
    except Exception as exc:
        AuditExport.objects.filter(pk=export_id).update(
            status=ExportStatus.FAILED, error=str(exc)[:1000], finished_at=timezone.now()
        )
        logger.exception("Audit export %s failed", export_id)
        raise
    with transaction.atomic(), audit_context(AuditContext(request_id=export.request_id)):
        AuditExport.objects.filter(pk=export_id).update(
            status=ExportStatus.DONE,
            file=export.file.name,
            rows_written=rows,
            total_rows=rows,
            finished_at=timezone.now(),
        )
        audit_record(
            actor=actor,
            action=AuditOwnAction.EXPORTED,
            department=_event_department(actor, filters),
            data={
                "format": export.format,
                "filters": export.filters,
                "rows": rows,
                "mode": "background",
                "export_id": export_id,
                "head_sequence": export.head_sequence,
            },
        )
    export.refresh_from_db()
    return export


# --- the per-notice receipt report ------------------------------------------------------------


def receipts_file_name(notice_id: int, fmt: str, when: Any = None) -> str:
    stamp = timezone.localtime(when).strftime("%Y%m%d-%H%M%S")
    return f"notice-{notice_id}-receipts-{stamp}.{fmt}"


def receipts_export_start(
    *, actor: User, notice_id: int, filters: receipts.ReceiptFilters, fmt: str
) -> ExportStart:
    """Start an export of one notice's receipt report.

    Permission: EXPORT_AUDIT in the notice's department (Http404 otherwise, as for the page).
    Audit: audit.exported (report, notice, filters, format, rows) before a streamed export's
    first byte, or when a background export's file is complete. Side effect: enqueues
    audit.export_events for XLSX and for reports above AUDIT_EXPORT_SYNC_MAX_ROWS.
    """
    if fmt not in ExportFormat.values:
        raise ApplicationError(f"Unknown export format {fmt!r}.", field="format")
    notice = receipts.notice_get_for_auditor(
        user=actor, notice_id=notice_id, perm=perms.EXPORT_AUDIT
    )
    queryset = receipts.receipts_filter(notice, filters)
    name = receipts_file_name(notice.pk, fmt)
    content_type = CONTENT_TYPES[ExportFormat(fmt)]
    if fmt != ExportFormat.XLSX:
        rows = queryset[: sync_max_rows() + 1].count()
        if rows <= sync_max_rows():
            contacts = receipts.may_see_contacts(actor, notice)
            _record_receipts_export(
                actor, notice, filters.as_dict(), fmt, rows, mode="streamed", contacts=contacts
            )
            stream = receipts.receipt_rows(queryset, contacts=contacts)
            writer = csv_chunks if fmt == ExportFormat.CSV else json_chunks
            return ExportStart(
                file_name=name, content_type=content_type, chunks=writer(receipts.HEADERS, stream)
            )
    head, _ = chain_head()
    job_filters: dict[str, Any] = {
        receipts.REPORT_KEY: receipts.REPORT_RECEIPTS,
        "notice": notice.pk,
        **filters.as_dict(),
    }
    export = _export_enqueue(actor=actor, filters=job_filters, fmt=fmt, head=head)
    return ExportStart(file_name=name, content_type=content_type, background=export)


def _record_receipts_export(
    actor: User,
    notice: Any,
    filters: dict[str, str],
    fmt: str,
    rows: int,
    *,
    mode: str,
    contacts: bool,
    export_id: str = "",
) -> None:
    data: dict[str, Any] = {
        "report": receipts.REPORT_RECEIPTS,
        "notice": notice.pk,
        "format": fmt,
        "filters": filters,
        "rows": rows,
        "mode": mode,
        "full_mobiles": contacts,
    }
    if export_id:
        data["export_id"] = export_id
    audit_record(
        actor=actor,
        action=AuditOwnAction.EXPORTED,
        target=notice,
        department=notice.department,
        data=data,
    )


def _receipts_run(export: AuditExport) -> AuditExport:
    """The background half of receipts_export_start (the export is already claimed)."""
    export_id = str(export.pk)
    actor = export.requested_by
    filters = receipts.ReceiptFilters.from_dict(export.filters)
    try:
        # Checked again now: a report queued by someone who has since lost the role is not written.
        notice = receipts.notice_get_for_auditor(
            user=actor, notice_id=int(export.filters["notice"]), perm=perms.EXPORT_AUDIT
        )
        contacts = receipts.may_see_contacts(actor, notice)
        queryset = receipts.receipts_filter(notice, filters)
        AuditExport.objects.filter(pk=export_id).update(total_rows=queryset.count())
        rows = _RowCounter(
            _counted(receipts.receipt_rows(queryset, contacts=contacts), _progress(export_id))
        )
        with tempfile.TemporaryDirectory(prefix="audit-export-") as tmp:
            path = Path(tmp) / receipts_file_name(notice.pk, export.format, export.requested_at)
            if export.format == ExportFormat.XLSX:
                write_xlsx(path, receipts.HEADERS, rows, title="Receipts")
            else:
                writer = csv_chunks if export.format == ExportFormat.CSV else json_chunks
                with path.open("wb") as out:
                    for chunk in writer(receipts.HEADERS, rows):
                        out.write(chunk)
            with path.open("rb") as handle:
                export.file.save(path.name, File(handle), save=False)
    except Exception as exc:
        AuditExport.objects.filter(pk=export_id).update(
            status=ExportStatus.FAILED, error=str(exc)[:1000], finished_at=timezone.now()
        )
        logger.exception("Receipt report export %s failed", export_id)
        raise
    with transaction.atomic(), audit_context(AuditContext(request_id=export.request_id)):
        AuditExport.objects.filter(pk=export_id).update(
            status=ExportStatus.DONE,
            file=export.file.name,
            rows_written=rows.count,
            total_rows=rows.count,
            finished_at=timezone.now(),
        )
        _record_receipts_export(
            actor,
            notice,
            filters.as_dict(),
            export.format,
            rows.count,
            mode="background",
            contacts=contacts,
            export_id=export_id,
        )
    export.refresh_from_db()
    return export
