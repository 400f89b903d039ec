"""Recipient file import: validate every row, then write all of it or none of it.

PostgreSQL: a CSV whose lines are its records is COPYed into a temporary table and checked in SQL
(audiences.pgimport); other files are read and checked in Python (audiences.validation). The
valid rows are then merged (audiences.merge) and the import audited, in one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils.translation import gettext as _

from accounts.models import Department
from audiences import pgimport
from audiences.audit_actions import AudienceAuditAction
from audiences.merge import MergeCounts, merge_fields, merge_rows, merge_staged
from audiences.models import FileFormat
from audiences.reader import (
    Limits,
    check_header_width,
    check_size,
    decode_utf8,
    file_format_for,
    inspect_xlsx,
    read_file,
)
from audiences.services import require_manage
from audiences.validation import (
    CleanRecipient,
    ImportFileError,
    RecipientValidator,
    RowError,
    check_header,
    check_rows,
)
from audit.services import audit_record
from common.types import Actor

Progress = Callable[[int, int], None]

MAX_REPORTED_ERRORS = 1000


def _concurrent_message() -> str:
    return _(
        "Another import or directory sync added some of these recipients at the same moment;"
        " nothing was written. Run the import again."
    )


_PROGRESS_EVERY = 20_000


@dataclass
class ImportReport:
    file_name: str
    file_sha256: str
    dry_run: bool
    total: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    file_error: str = ""
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.file_error and self.error_count == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "file_name": self.file_name,
            "file_sha256": self.file_sha256,
            "dry_run": self.dry_run,
            "total": self.total,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "invalid": self.error_count,
            "file_error": self.file_error,
            "written": self.written,
        }

    def add_counts(self, counts: MergeCounts) -> None:
        self.new, self.updated, self.unchanged = counts.new, counts.updated, counts.unchanged


@dataclass
class CheckedFile:
    """A file read and checked in Python: its columns and its valid rows."""

    columns: list[str]
    rows: list[CleanRecipient]


def check_file(
    *,
    department: Department,
    data: bytes,
    file_format: str,
    report: ImportReport,
    max_rows: int,
    progress: Progress | None,
) -> CheckedFile | None:
    """Read and check the file in Python; None when it is refused (report says why)."""
    if report.file_error:
        return None
    try:
        parsed = read_file(data, file_format, limits=Limits.from_settings(rows=max_rows))
        columns = check_header(parsed.header)
    except ImportFileError as exc:
        report.file_error = exc.message
        return None
    report.total = len(parsed.rows)
    if report.total == 0:
        report.file_error = _("The file has a header row but no recipients.")
        return None
    validator = RecipientValidator(department.pk)
    clean: list[CleanRecipient] = []
    for done, outcome in enumerate(check_rows(validator, columns, parsed.rows), start=1):
        if isinstance(outcome, RowError):
            report.error_count += 1
            if len(report.errors) < MAX_REPORTED_ERRORS:
                report.errors.append(outcome)
        else:
            clean.append(outcome)
        if progress is not None and done % _PROGRESS_EVERY == 0:
            progress(done, report.total)
    return CheckedFile(columns=columns, rows=clean)


def recipients_import(
    *,
    actor: Actor,
    department: Department,
    data: bytes,
    file_name: str,
    file_format: str = FileFormat.CSV,
    dry_run: bool = False,
    max_rows: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Validate a CSV/XLSX recipient file and, unless dry_run or any row is invalid, upsert all of it.

    Permission: manage_audience in `department` (actor=None: system, i.e. the bulk command and
    background jobs started by an authorised person). Upsert key: (department, dingtalk_user_id).
    Audit: audiences.imported (with counts and the file's SHA-256) when written,
    audiences.import_rejected whenever a file is refused (a dry run's refusal too: it is what
    the person sees). Never writes a partial file.
    """
    require_manage(actor, department)
    report = ImportReport(
        file_name=file_name, file_sha256=hashlib.sha256(data).hexdigest(), dry_run=dry_run
    )
    limit = max_rows or settings.AUDIENCES_IMPORT_MAX_ROWS
    try:
        if file_format_for(file_name) != file_format and file_format == FileFormat.CSV:
            raise ImportFileError(
                _("The file is named %(name)s but was sent as CSV text.") % {"name": file_name}
            )
    except ImportFileError as exc:
        report.file_error = exc.message
    checkable = sql_checkable_text(data, file_format, report)
    checked: CheckedFile | None = None
    if checkable is not None:
        try:
            _import_via_sql(
                actor=actor,
                department=department,
                checkable=checkable,
                report=report,
                max_rows=limit,
                progress=progress,
            )
        except IntegrityError:
            report.file_error = _concurrent_message()
    else:
        checked = check_file(
            department=department,
            data=data,
            file_format=file_format,
            report=report,
            max_rows=limit,
            progress=progress,
        )
    if report.written or (report.ok and dry_run and checked is None):
        _progress_done(progress, report)
        return report
    if checked is None or not report.ok:
        _record_rejection(actor=actor, department=department, report=report)
        return report
    try:
        write_checked(actor=actor, department=department, checked=checked, report=report)
    except IntegrityError:
        report.file_error = _concurrent_message()
        return report
    _progress_done(progress, report)
    return report


@dataclass(frozen=True)
class UploadCheck:
    """A first look at an upload in a web request: its format, and whether it needs a job."""

    file_format: str
    large: bool = False  # more rows than a web request reads: import it as a background job
    error: str = ""  # refused as a whole (and audited)


def upload_check(
    *, actor: Actor, department: Department, data: bytes, file_name: str, size: int | None = None
) -> UploadCheck:
    """Read at most AUDIENCES_ADMIN_SYNC_MAX_ROWS rows of an upload, with every whole-file limit.

    `size`: the upload's size when `data` is only its first bytes (an upload over the limit).
    Permission: manage_audience. A refused file is audited (audiences.import_rejected) and its
    human message returned; rows are counted from the data, whatever the format and line endings.
    """
    require_manage(actor, department)
    file_format: str = FileFormat.CSV
    try:
        file_format = file_format_for(file_name)
        check_size(data, Limits.from_settings(), size=size)
        if file_format == FileFormat.XLSX:
            unpacked = inspect_xlsx(data, Limits.from_settings())
            if unpacked > settings.AUDIENCES_ADMIN_SYNC_MAX_UNPACKED_BYTES:
                # openpyxl reads a workbook's shared strings whole: a big one is the job's work.
                return UploadCheck(file_format=file_format, large=True)
        parsed = read_file(data, file_format, stop_after=settings.AUDIENCES_ADMIN_SYNC_MAX_ROWS)
        check_header(parsed.header)
        if not parsed.rows:
            raise ImportFileError(_("The file has a header row but no recipients."))
    except ImportFileError as exc:
        report = ImportReport(
            file_name=file_name,
            file_sha256=hashlib.sha256(data).hexdigest(),
            dry_run=True,
            file_error=exc.message,
        )
        _record_rejection(actor=actor, department=department, report=report)
        return UploadCheck(file_format=file_format, error=exc.message)
    return UploadCheck(file_format=file_format, large=parsed.more)


def _progress_done(progress: Progress | None, report: ImportReport) -> None:
    if progress is not None:
        progress(report.total, report.total)


@transaction.atomic
def _record_rejection(*, actor: Actor, department: Department, report: ImportReport) -> None:
    audit_record(
        actor=actor,
        action=AudienceAuditAction.IMPORT_REJECTED,
        department=department,
        target_label=report.file_name,
        # Line numbers, not the reasons: those quote the cells (user ids, numbers,
        # names), and the trail cannot forget a person whose data is erased later.
        data={
            **report.as_dict(),
            "first_error_lines": [e.line for e in report.errors[:20]],
        },
    )


def _too_large(data: bytes, report: ImportReport) -> bool:
    try:
        check_size(data, Limits.from_settings())
    except ImportFileError as exc:
        report.file_error = exc.message
        return True
    return False


@dataclass(frozen=True)
class SqlText:
    """A CSV file as the PostgreSQL path checks it."""

    text: str  # one record a line, header first
    separator: str  # between the cells of a line
    columns: list[str]


def sql_checkable_text(data: bytes, file_format: str, report: ImportReport) -> SqlText | None:
    """The file as the PostgreSQL path can check it (see audiences.pgimport), else None.

    None also when the file is refused as a whole (size, encoding, header): report.file_error says
    why, and the Python path below repeats the cheap refusal with the same message.
    """
    if (
        report.file_error
        or connection.vendor != "postgresql"
        or file_format != FileFormat.CSV
        or not data.strip()
    ):
        return None
    if _too_large(data, report):
        return None
    try:
        text = decode_utf8(data)
    except ImportFileError as exc:
        report.file_error = exc.message
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    separator = ","
    if not pgimport.lines_are_records(text):
        records = pgimport.quoted_records_text(text)
        if records is None:
            return None
        text, separator = records, pgimport.RECORD_SEPARATOR
    header = text.partition("\n")[0].split(separator)
    if not any(header):
        return None  # blank lines first: the reader skips them, and numbers the lines after
    try:
        check_header_width(header, Limits.from_settings())
        columns = check_header(header)
    except ImportFileError as exc:
        report.file_error = exc.message
        return None
    return SqlText(text=text, separator=separator, columns=columns)


def _import_via_sql(
    *,
    actor: Actor,
    department: Department,
    checkable: SqlText,
    report: ImportReport,
    max_rows: int,
    progress: Progress | None,
) -> None:
    """Check and merge a line-per-record CSV inside one transaction, rolled back unless written."""
    columns = checkable.columns
    with transaction.atomic():
        staged = pgimport.stage_and_check(
            text=checkable.text,
            separator=checkable.separator,
            columns=columns,
            validator=RecipientValidator(department.pk),
            max_rows=max_rows,
            max_reported=MAX_REPORTED_ERRORS,
            progress=progress,
        )
        report.total, report.errors = staged.total, staged.errors
        report.error_count, report.file_error = staged.error_count, staged.file_error
        if not report.ok:
            transaction.set_rollback(True)
            return
        _write_staged(actor=actor, department=department, columns=columns, report=report)


@transaction.atomic
def write_checked(
    *, actor: Actor, department: Department, checked: CheckedFile, report: ImportReport
) -> None:
    """Merge a file checked in Python (report.ok) and audit it; a dry run is rolled back."""
    counts = merge_rows(
        department=department,
        rows=checked.rows,
        fields=merge_fields(checked.columns),
        with_tags="tags" in checked.columns,
        dry_run=report.dry_run,
    )
    report.add_counts(counts)
    _finish_write(actor=actor, department=department, report=report)


@transaction.atomic
def _write_staged(
    *, actor: Actor, department: Department, columns: list[str], report: ImportReport
) -> None:
    counts = merge_staged(
        department=department,
        fields=merge_fields(columns),
        with_tags="tags" in columns,
        total=report.total,
        dry_run=report.dry_run,
    )
    report.add_counts(counts)
    _finish_write(actor=actor, department=department, report=report)


def _finish_write(*, actor: Actor, department: Department, report: ImportReport) -> None:
    if report.dry_run:
        # The counts are computed against the real table; nothing of it may survive a preview.
        transaction.set_rollback(True)
        return
    report.written = True
    audit_record(
        actor=actor,
        action=AudienceAuditAction.IMPORTED,
        department=department,
        target_label=report.file_name,
        data=report.as_dict(),
    )
