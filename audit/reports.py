"""Reports that other apps export through the trail's export machinery, registered by name.

audit imports no other app: an app that owns a report (delivery's per-notice receipt report)
registers a builder in its AppConfig.ready(), as it registers its audit action codes. A
builder takes the person exporting and the report's parameters, checks that they may export
it (raising Http404 if not) and returns a Report: its columns, its rows, and what the
audit.exported event says about it. The export then runs like the trail's own: streamed
CSV/JSON when small, a background audit.export_events job for XLSX and large reports, every
cell neutralised, recorded as audit.exported with the report's target and department,
data.report = its name, and its filters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.db import models
from django.db.models import QuerySet

from audit.actions import AuditOwnAction
from audit.export_jobs import (
    CONTENT_TYPES,
    ExportMode,
    ExportStart,
    RowCounter,
    counted,
    export_file_store,
    export_finish,
    export_job_create,
    failing_export,
    progress_reporter,
    rows_file_write,
    stamped_file_name,
    sync_max_rows,
)
from audit.models import AuditExport, ExportFormat
from audit.services import audit_record, chain_head
from audit.spreadsheets import csv_chunks, json_chunks
from common.errors import ApplicationError

# In a job's (and a report's) parameters: which registered report it is.
REPORT_KEY = "report"


@dataclass(frozen=True)
class Report:
    """One report, already scoped to the person exporting it."""

    name: str  # the registered name: data.report of the event, REPORT_KEY of the job
    subject: dict[str, Any]  # what it is a report of, e.g. {"notice": 12}: on the job and event
    filters: dict[str, str]  # the reader's filters, only those set: data.filters of the event
    file_stem: str  # the file is "<file_stem>-<timestamp>.<format>"
    title: str  # the XLSX sheets' title
    headers: list[str]
    queryset: QuerySet[Any]  # counted: streamed or background, and the job's total
    rows: Callable[[], Iterator[list[Any]]]  # every row in order, cells not yet neutralised
    target: models.Model  # the event's target and department
    department: Any
    event_extra: dict[str, Any] = field(default_factory=dict)  # more event data of its own
    # The whole CSV streamed by the database (COPY on PostgreSQL), cells already neutralised;
    # called with a row-count callback. None: the CSV is written from `rows`.
    csv_copy: Callable[[Callable[[int], None] | None], Iterator[bytes]] | None = None

    def params(self) -> dict[str, Any]:
        """What a background job keeps to build the same report again when it runs."""
        return {REPORT_KEY: self.name, **self.subject, **self.filters}


# (person exporting, the report's parameters as params() gives them) -> the report, or Http404.
ReportBuilder = Callable[[User, dict[str, Any]], Report]

_BUILDERS: dict[str, ReportBuilder] = {}


def register_report(name: str, builder: ReportBuilder) -> None:
    """Make a report exportable under `name` (call it from the owning app's ready())."""
    _BUILDERS[name] = builder


def is_report(params: dict[str, Any]) -> bool:
    """Whether a job's parameters are a registered report's (rather than trail filters)."""
    return params.get(REPORT_KEY) in _BUILDERS


def report_build(*, actor: User, params: dict[str, Any]) -> Report:
    """The report named in `params`, scoped to `actor` (the builder raises Http404 if refused)."""
    return _BUILDERS[params[REPORT_KEY]](actor, params)


def _event_data(
    report: Report, fmt: str, rows: int, mode: ExportMode, export_id: str = ""
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "report": report.name,
        **report.subject,
        "format": fmt,
        "filters": report.filters,
        "rows": rows,
        "mode": mode,
        **report.event_extra,
    }
    if export_id:
        data["export_id"] = export_id
    return data


def report_export_start(*, actor: User, params: dict[str, Any], fmt: str) -> ExportStart:
    """Start an export of the registered report that `params` names.

    Permission: the report's builder decides (Http404 otherwise, as for its page). Audit:
    audit.exported (report, subject, format, filters, rows) before a streamed export's first
    byte, or when a background export's file is complete. Side effect: enqueues
    audit.export_events for XLSX and for reports above AUDIT_EXPORT_SYNC_MAX_ROWS.
    """
    if fmt not in ExportFormat.values:
        raise ApplicationError(f"Unknown export format {fmt!r}.", field="format")
    report = report_build(actor=actor, params=params)
    name = stamped_file_name(report.file_stem, fmt)
    content_type = CONTENT_TYPES[ExportFormat(fmt)]
    if fmt != ExportFormat.XLSX:
        # A bounded count: never more than threshold + 1 rows are counted.
        rows = report.queryset[: sync_max_rows() + 1].count()
        if rows <= sync_max_rows():
            audit_record(
                actor=actor,
                action=AuditOwnAction.EXPORTED,
                target=report.target,
                department=report.department,
                data=_event_data(report, fmt, rows, ExportMode.STREAMED),
            )
            writer = csv_chunks if fmt == ExportFormat.CSV else json_chunks
            return ExportStart(
                file_name=name,
                content_type=content_type,
                chunks=writer(report.headers, report.rows()),
            )
    head, _ = chain_head()
    export = export_job_create(actor=actor, filters=report.params(), fmt=fmt, head=head)
    return ExportStart(file_name=name, content_type=content_type, background=export)


def _copy_write(path: Any, report: Report, progress: Callable[[int], None]) -> int:
    """Write the database's CSV of `report` to `path`; returns the data rows written."""
    assert report.csv_copy is not None  # noqa: S101 - the caller checked
    seen = [0]

    def count(rows: int) -> None:
        seen[0] = rows
        progress(rows)

    with path.open("wb") as out:
        for chunk in report.csv_copy(count):
            out.write(chunk)
    return seen[0]


def report_export_run(export: AuditExport) -> AuditExport:
    """The background half of report_export_start, once export_run has claimed the job."""
    export_id = str(export.pk)
    with failing_export(export_id, f"Report export ({export.filters.get(REPORT_KEY)})"):
        # Built again now: a report queued by someone who has since lost the role is not written.
        report = report_build(actor=export.requested_by, params=export.filters)
        AuditExport.objects.filter(pk=export_id).update(total_rows=report.queryset.count())
        name = stamped_file_name(report.file_stem, export.format, export.requested_at)
        if export.format == ExportFormat.CSV and report.csv_copy is not None:
            written = export_file_store(
                export, name, lambda path: _copy_write(path, report, progress_reporter(export_id))
            )
        else:
            rows = RowCounter(counted(report.rows(), progress_reporter(export_id)))
            written = export_file_store(
                export,
                name,
                lambda path: rows_file_write(
                    path, export.format, report.headers, rows, title=report.title
                ),
            )
    return export_finish(
        export,
        rows=written,
        target=report.target,
        department=report.department,
        data=_event_data(report, export.format, written, ExportMode.BACKGROUND, export_id),
    )
