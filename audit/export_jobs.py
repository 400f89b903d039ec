"""Background export jobs, whatever they export: create and queue, claim, report progress,
write the file, then finish (recording audit.exported) or fail.

The trail's own exports (audit.exports) and registered reports (audit.reports) both run
through here, so every file is written the same way: in constant memory, every cell
neutralised, claimed once however often the task is delivered, and recorded as
audit.exported in the same transaction that marks the job done.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from audit import enqueue
from audit.actions import AuditOwnAction
from audit.context import AuditContext, audit_context, current_context
from audit.models import AuditExport, ExportFormat, ExportStatus
from audit.services import audit_record
from audit.spreadsheets import csv_chunks, json_chunks, write_xlsx

# The exports' log, whichever module runs them.
logger = logging.getLogger("audit.exports")

PROGRESS_EVERY = 5000
# A running export that has not reported progress for this long is presumed dead and may be reclaimed.
STALE_AFTER_SECONDS = 15 * 60

CONTENT_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSON: "application/json",
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class ExportMode(StrEnum):
    """How an export reached its reader (the `mode` of its audit.exported event)."""

    STREAMED = "streamed"
    BACKGROUND = "background"


def sync_max_rows() -> int:
    """Above this many rows a CSV or JSON export goes to the background instead of streaming."""
    return int(getattr(settings, "AUDIT_EXPORT_SYNC_MAX_ROWS", 50_000))


def stamped_file_name(stem: str, fmt: str, when: Any = None) -> str:
    """`<stem>-YYYYmmdd-HHMMSS.<fmt>`, in local time (now, or `when`)."""
    stamp = timezone.localtime(when).strftime("%Y%m%d-%H%M%S")
    return f"{stem}-{stamp}.{fmt}"


@dataclass(frozen=True)
class ExportStart:
    """Either a stream to send now, or a background export to follow."""

    file_name: str
    content_type: str
    chunks: Iterator[bytes] | None = None
    background: AuditExport | None = None


@transaction.atomic
def export_job_create(*, actor: User, filters: dict[str, Any], fmt: str, head: int) -> AuditExport:
    """A pending background export; its task is queued when the transaction commits."""
    export = AuditExport.objects.create(
        requested_by=actor,
        request_id=current_context().request_id,
        format=fmt,
        filters=filters,
        head_sequence=head,
    )
    export_id = str(export.pk)
    transaction.on_commit(lambda: enqueue.export_events(export_id))
    return export


def export_claim(export_id: str) -> bool:
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


def progress_reporter(export_id: str) -> Callable[[int], None]:
    """A callback that records rows written so far (and that the run is alive)."""

    def report(rows: int) -> None:
        AuditExport.objects.filter(pk=export_id).update(
            rows_written=rows, heartbeat_at=timezone.now()
        )

    return report


def counted(rows: Iterator[list[Any]], report: Callable[[int], None]) -> Iterator[list[Any]]:
    """`rows`, reporting progress every PROGRESS_EVERY rows."""
    for written, row in enumerate(rows, start=1):
        yield row
        if written % PROGRESS_EVERY == 0:
            report(written)


class RowCounter:
    """Counts the rows that pass through it (a writer consumes them; the count is read after)."""

    def __init__(self, rows: Iterator[list[Any]]) -> None:
        self.rows = rows
        self.count = 0

    def __iter__(self) -> Iterator[list[Any]]:
        for row in self.rows:
            self.count += 1
            yield row


def rows_file_write(
    path: Path,
    fmt: str,
    headers: Sequence[str],
    rows: RowCounter,
    *,
    title: str,
    neutralised: bool = False,
) -> int:
    """Write rows to `path` as XLSX, CSV or JSON (cells neutralised unless they already are).

    Returns the number of data rows written.
    """
    if fmt == ExportFormat.XLSX:
        write_xlsx(path, headers, rows, title=title)
        return rows.count
    writer = csv_chunks if fmt == ExportFormat.CSV else json_chunks
    with path.open("wb") as out:
        for chunk in writer(headers, rows, neutralised=neutralised):
            out.write(chunk)
    return rows.count


def export_file_store(export: AuditExport, name: str, write: Callable[[Path], int]) -> int:
    """Let `write` make the file in a private temporary folder, then store it on the export.

    Returns what `write` returned: the number of data rows written.
    """
    with tempfile.TemporaryDirectory(prefix="audit-export-") as tmp:
        path = Path(tmp) / name
        rows = write(path)
        with path.open("rb") as handle:
            export.file.save(path.name, File(handle), save=False)
    return rows


@contextlib.contextmanager
def failing_export(export_id: str, what: str) -> Iterator[None]:
    """Mark the export FAILED, log and re-raise if the body raises: no file, no event."""
    try:
        yield
    except Exception as exc:
        AuditExport.objects.filter(pk=export_id).update(
            status=ExportStatus.FAILED, error=str(exc)[:1000], finished_at=timezone.now()
        )
        logger.exception("%s %s failed", what, export_id)
        raise


def export_finish(
    export: AuditExport,
    *,
    rows: int,
    target: models.Model | None,
    department: Any,
    data: dict[str, Any],
) -> AuditExport:
    """Mark the export done and record audit.exported, in one transaction.

    The event carries the request id of the request that asked for the export.
    """
    with transaction.atomic(), audit_context(AuditContext(request_id=export.request_id)):
        AuditExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.DONE,
            file=export.file.name,
            rows_written=rows,
            total_rows=rows,
            finished_at=timezone.now(),
        )
        audit_record(
            actor=export.requested_by,
            action=AuditOwnAction.EXPORTED,
            target=target,
            department=department,
            data=data,
        )
    export.refresh_from_db()
    return export
