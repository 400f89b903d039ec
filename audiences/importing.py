"""Recipient file import: validate every row, then write all of it or none of it.

PostgreSQL: the file is COPYed into a temporary table and checked in SQL (audiences.pgimport), and
the valid rows are merged into the recipient table by one UPDATE of the rows that differ and one
INSERT of the new ones (so a re-import changes nothing). Other databases take a slower ORM path
with the same rules and counts.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, User
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import permissions as perms
from accounts.models import Department
from audiences import pgimport
from audiences.audit_actions import AudienceAuditAction
from audiences.models import ImportJob, ImportState, Recipient, RecipientTag, SubscriptionSource
from audiences.validation import (
    CleanRecipient,
    ImportFileError,
    RecipientValidator,
    RowError,
    _decode,
    check_header,
    check_rows,
    read_file,
)
from audit.services import audit_record
from common.errors import ApplicationError

Progress = Callable[[int, int], None]

# Columns the merge may change; the optional ones only when the file has that column.
_BASE_FIELDS = ("name", "mobile", "language", "district_id")
_OPTIONAL_FIELDS = {
    "function_tag": "function_tag",
    "risk_level": "risk_level",
    "subscription": "subscription_state",
}
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


@dataclass
class _Checked:
    columns: list[str]
    rows: list[CleanRecipient]


def _authorise(actor: AbstractBaseUser | None, department: Department) -> None:
    # actor=None is the system: the bulk command and background jobs started by an authorised person.
    if actor is not None:
        perms.require_department_perm(actor, perms.MANAGE_AUDIENCE, department)


def _check_file(
    *,
    department: Department,
    data: bytes,
    file_format: str,
    report: ImportReport,
    max_rows: int,
    progress: Progress | None,
) -> _Checked | None:
    if report.file_error or _too_large(data, report):
        return None
    try:
        parsed = read_file(data, file_format)
        columns = check_header(parsed.header)
    except ImportFileError as exc:
        report.file_error = exc.message
        return None
    report.total = len(parsed.rows)
    if report.total == 0:
        report.file_error = _("The file has a header row but no recipients.")
        return None
    if report.total > max_rows:
        report.file_error = _("The file has %(rows)s rows; the limit here is %(limit)s.") % {
            "rows": report.total,
            "limit": max_rows,
        }
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
    return _Checked(columns=columns, rows=clean)


def recipients_import(
    *,
    actor: AbstractBaseUser | None,
    department: Department,
    data: bytes,
    file_name: str,
    file_format: str = "csv",
    dry_run: bool = False,
    max_rows: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Validate a CSV/XLSX recipient file and, unless dry_run or any row is invalid, upsert all of it.

    Permission: manage_audience in `department` (actor=None: system). Upsert key: (department,
    dingtalk_user_id). Audit: audiences.imported (with counts and the file's SHA-256) when written,
    audiences.import_rejected when a real import is refused. Never writes a partial file.
    """
    _authorise(actor, department)
    report = ImportReport(
        file_name=file_name, file_sha256=hashlib.sha256(data).hexdigest(), dry_run=dry_run
    )
    limit = max_rows or settings.AUDIENCES_IMPORT_MAX_ROWS
    checkable = _sql_checkable_text(data, file_format, report)
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
        checked = None
    else:
        checked = _check_file(
            department=department,
            data=data,
            file_format=file_format,
            report=report,
            max_rows=limit,
            progress=progress,
        )
    if report.written or (report.ok and dry_run and checked is None):
        if progress is not None:
            progress(report.total, report.total)
        return report
    if checked is None or not report.ok:
        if not dry_run:
            with transaction.atomic():
                audit_record(
                    actor=actor,
                    action=AudienceAuditAction.IMPORT_REJECTED,
                    department=department,
                    target_label=file_name,
                    # Line numbers, not the reasons: those quote the cells (user ids, numbers,
                    # names), and the trail cannot forget a person whose data is erased later.
                    data={
                        **report.as_dict(),
                        "first_error_lines": [e.line for e in report.errors[:20]],
                    },
                )
        return report
    try:
        _write(actor=actor, department=department, checked=checked, report=report)
    except IntegrityError:
        report.file_error = _concurrent_message()
        return report
    if progress is not None:
        progress(report.total, report.total)
    return report


def _too_large(data: bytes, report: ImportReport) -> bool:
    if len(data) <= settings.AUDIENCES_IMPORT_MAX_BYTES:
        return False
    report.file_error = _(
        "The file is %(size)s MB; the limit is %(limit)s MB. Split it into smaller files."
    ) % {
        "size": round(len(data) / 1_048_576, 1),
        "limit": settings.AUDIENCES_IMPORT_MAX_BYTES // 1_048_576,
    }
    return True


@dataclass(frozen=True)
class _SqlText:
    text: str  # one record a line, header first
    separator: str  # between the cells of a line
    columns: list[str]


def _sql_checkable_text(data: bytes, file_format: str, report: ImportReport) -> _SqlText | None:
    """The file as the PostgreSQL path can check it (see audiences.pgimport), else None.

    None also when the file is refused as a whole (size, encoding, header): report.file_error says
    why, and the Python path below repeats the cheap refusal with the same message.
    """
    if connection.vendor != "postgresql" or file_format != "csv" or not data.strip():
        return None
    if _too_large(data, report):
        return None
    try:
        text = _decode(data)
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
    header, _newline, _rest = text.partition("\n")
    try:
        columns = check_header(header.split(separator))
    except ImportFileError as exc:
        report.file_error = exc.message
        return None
    return _SqlText(text=text, separator=separator, columns=columns)


def _import_via_sql(
    *,
    actor: AbstractBaseUser | None,
    department: Department,
    checkable: _SqlText,
    report: ImportReport,
    max_rows: int,
    progress: Progress | None,
) -> None:
    """Check and merge a line-per-record CSV inside one transaction, rolled back unless written."""
    columns = checkable.columns
    with transaction.atomic():
        total, errors, error_count, file_error = pgimport.stage_and_check(
            text=checkable.text,
            separator=checkable.separator,
            columns=columns,
            validator=RecipientValidator(department.pk),
            max_rows=max_rows,
            max_reported=MAX_REPORTED_ERRORS,
            progress=progress,
        )
        report.total, report.errors, report.error_count = total, errors, error_count
        report.file_error = file_error
        if not report.ok:
            transaction.set_rollback(True)
            return
        _write_staged(actor=actor, department=department, columns=columns, report=report)


@transaction.atomic
def _write(
    *,
    actor: AbstractBaseUser | None,
    department: Department,
    checked: _Checked,
    report: ImportReport,
) -> None:
    fields = _merge_fields(checked.columns)
    with_tags = "tags" in checked.columns
    if connection.vendor == "postgresql":
        _merge_postgres(
            department=department,
            rows=checked.rows,
            fields=fields,
            with_tags=with_tags,
            report=report,
        )
    else:
        _merge_orm(
            department=department,
            rows=checked.rows,
            fields=fields,
            with_tags=with_tags,
            report=report,
        )
    _finish_write(actor=actor, department=department, report=report)


def _merge_fields(columns: Sequence[str]) -> list[str]:
    return list(_BASE_FIELDS) + [
        model for column, model in _OPTIONAL_FIELDS.items() if column in columns
    ]


@transaction.atomic
def _write_staged(
    *,
    actor: AbstractBaseUser | None,
    department: Department,
    columns: Sequence[str],
    report: ImportReport,
) -> None:
    _merge_staged(
        department=department,
        fields=_merge_fields(columns),
        with_tags="tags" in columns,
        report=report,
    )
    _finish_write(actor=actor, department=department, report=report)


def _finish_write(
    *, actor: AbstractBaseUser | None, department: Department, report: ImportReport
) -> None:
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


def _merge_postgres(
    *,
    department: Department,
    rows: Sequence[CleanRecipient],
    fields: list[str],
    with_tags: bool,
    report: ImportReport,
) -> None:
    with connection.cursor() as cursor:
        pgimport.create_staging(cursor)
        pgimport.copy_clean_rows(cursor, rows)
        cursor.execute(f"ANALYZE {pgimport.STAGING}")
    _merge_staged(department=department, fields=fields, with_tags=with_tags, report=report)


def _merge_staged(
    *, department: Department, fields: list[str], with_tags: bool, report: ImportReport
) -> None:
    """Count and (unless a dry run) merge the staging table's rows into the recipient table."""
    table = Recipient._meta.db_table
    tag_table = RecipientTag._meta.db_table
    now = timezone.now()
    with connection.cursor() as cursor:
        old = ", ".join(f"r.{f}" for f in fields)
        new = ", ".join(f"s.{f}" for f in fields)
        differs = f"({old}) IS DISTINCT FROM ({new})"
        if with_tags:
            differs += (
                f" OR COALESCE((SELECT array_agg(t.tag_id ORDER BY t.tag_id) FROM {tag_table} t"  # noqa: S608
                " WHERE t.recipient_id = r.id), '{}'::bigint[]) IS DISTINCT FROM s.tag_ids"
            )
        cursor.execute(
            f"SELECT count(*) FILTER (WHERE r.id IS NULL), count(*) FILTER (WHERE r.id IS NOT NULL AND ({differs}))"  # noqa: S608 - identifiers are ours
            f" FROM audiences_staging s LEFT JOIN {table} r ON r.department_id = %s AND r.dingtalk_user_id = s.uid",
            [department.pk],
        )
        report.new, report.updated = cursor.fetchone()
        report.unchanged = report.total - report.new - report.updated
        if report.dry_run or (report.new == 0 and report.updated == 0):
            cursor.execute("DROP TABLE audiences_staging")
            return
        subscription_changed = (
            "r.subscription_state IS DISTINCT FROM s.subscription_state"
            if "subscription_state" in fields
            else "FALSE"
        )
        # Existing rows change only the columns the file has, and only when something differs.
        # An UPDATE and a plain INSERT rather than INSERT ... ON CONFLICT: speculative insertion
        # costs a second index probe per row, a third of the merge on a million new rows.
        if report.updated:
            assignments = ", ".join(f"{f} = s.{f}" for f in fields)
            cursor.execute(
                f"UPDATE {table} r SET {assignments},"  # noqa: S608 - identifiers are ours
                f" subscription_source = CASE WHEN {subscription_changed} THEN %s ELSE r.subscription_source END,"
                f" subscription_changed_at = CASE WHEN {subscription_changed} THEN %s ELSE r.subscription_changed_at END,"
                f" updated_at = %s FROM audiences_staging s"
                f" WHERE r.department_id = %s AND r.dingtalk_user_id = s.uid AND ({old}) IS DISTINCT FROM ({new})",
                [SubscriptionSource.IMPORT, now, now, department.pk],
            )
        if report.new:
            # New rows take every column from the file. A concurrent import adding the same person
            # makes this fail on the unique index, and the whole import is rolled back. When the
            # count found no existing row at all, there is nothing to skip (no anti-join).
            params: list[Any] = [department.pk, SubscriptionSource.IMPORT, now, now, now]
            skip_existing = ""
            if report.new != report.total:
                skip_existing = (
                    f" WHERE NOT EXISTS (SELECT 1 FROM {table} r"  # noqa: S608
                    " WHERE r.department_id = %s AND r.dingtalk_user_id = s.uid)"
                )
                params.append(department.pk)
            cursor.execute(
                f"INSERT INTO {table} (department_id, dingtalk_user_id, name, mobile, language, district_id,"  # noqa: S608
                " function_tag, risk_level, subscription_state, subscription_source, subscription_changed_at,"
                " dingtalk_dept_ids, created_at, updated_at)"
                " SELECT %s, s.uid, s.name, s.mobile, s.language, s.district_id, s.function_tag, s.risk_level,"
                f" s.subscription_state, %s, %s, '[]'::jsonb, %s, %s FROM audiences_staging s{skip_existing}",
                params,
            )
        if with_tags:
            cursor.execute(
                f"DELETE FROM {tag_table} t USING audiences_staging s, {table} r"  # noqa: S608
                " WHERE r.department_id = %s AND r.dingtalk_user_id = s.uid AND t.recipient_id = r.id"
                " AND NOT (t.tag_id = ANY (s.tag_ids))",
                [department.pk],
            )
            cursor.execute(
                f"INSERT INTO {tag_table} (recipient_id, tag_id) SELECT r.id, unnest(s.tag_ids)"  # noqa: S608
                f" FROM audiences_staging s JOIN {table} r ON r.department_id = %s AND r.dingtalk_user_id = s.uid"
                " ON CONFLICT DO NOTHING",
                [department.pk],
            )
        cursor.execute("DROP TABLE audiences_staging")
        if report.new + report.updated > 10_000:
            # Fresh statistics, so segment counts plan well straight after a large import.
            cursor.execute(f"ANALYZE {table}")


def _merge_orm(
    *,
    department: Department,
    rows: Sequence[CleanRecipient],
    fields: list[str],
    with_tags: bool,
    report: ImportReport,
) -> None:
    now = timezone.now()
    existing: dict[str, Recipient] = {}
    uids = [r.dingtalk_user_id for r in rows]
    for start in range(0, len(uids), 500):
        for recipient in Recipient.objects.filter(
            department=department, dingtalk_user_id__in=uids[start : start + 500]
        ):
            existing[recipient.dingtalk_user_id] = recipient
    current_tags: dict[int, set[int]] = {}
    if with_tags and existing:
        ids = [r.pk for r in existing.values()]
        for start in range(0, len(ids), 500):
            for recipient_id, tag_id in RecipientTag.objects.filter(
                recipient_id__in=ids[start : start + 500]
            ).values_list("recipient_id", "tag_id"):
                current_tags.setdefault(recipient_id, set()).add(tag_id)
    creates: list[Recipient] = []
    create_tags: list[tuple[Recipient, tuple[int, ...]]] = []
    updates: list[Recipient] = []
    tag_changes: dict[int, tuple[int, ...]] = {}
    for row in rows:
        found = existing.get(row.dingtalk_user_id)
        if found is None:
            recipient = Recipient(
                department=department,
                dingtalk_user_id=row.dingtalk_user_id,
                subscription_source=SubscriptionSource.IMPORT,
                subscription_changed_at=now,
            )
            for name in fields:
                setattr(recipient, name, getattr(row, name))
            creates.append(recipient)
            create_tags.append((recipient, row.tag_ids))
            continue
        recipient = found
        changed = [name for name in fields if getattr(recipient, name) != getattr(row, name)]
        tags_differ = with_tags and current_tags.get(recipient.pk, set()) != set(row.tag_ids)
        if not changed and not tags_differ:
            report.unchanged += 1
            continue
        report.updated += 1
        if "subscription_state" in changed:
            recipient.subscription_source = SubscriptionSource.IMPORT
            recipient.subscription_changed_at = now
        for name in changed:
            setattr(recipient, name, getattr(row, name))
        if changed:
            recipient.updated_at = now
            updates.append(recipient)
        if tags_differ:
            tag_changes[recipient.pk] = row.tag_ids
    report.new = len(creates)
    if report.dry_run:
        return
    Recipient.objects.bulk_create(creates, batch_size=500)
    Recipient.objects.bulk_update(
        updates,
        [*fields, "subscription_source", "subscription_changed_at", "updated_at"],
        batch_size=500,
    )
    links = [
        RecipientTag(recipient_id=r.pk, tag_id=t)
        for r, tag_ids in create_tags
        if with_tags
        for t in tag_ids
    ]
    if tag_changes:
        RecipientTag.objects.filter(recipient_id__in=list(tag_changes)).delete()
        links += [
            RecipientTag(recipient_id=rid, tag_id=t)
            for rid, tag_ids in tag_changes.items()
            for t in tag_ids
        ]
    RecipientTag.objects.bulk_create(links, batch_size=500)


# --- background jobs for large files (admin uploads over AUDIENCES_ADMIN_SYNC_MAX_ROWS) ------


def _job_progress(job_id: int) -> Progress:
    def report(done: int, total: int) -> None:
        # Outside any transaction, so the page polling the job sees it at once.
        ImportJob.objects.filter(pk=job_id).update(processed_rows=done, total_rows=total)

    return report


@transaction.atomic
def import_job_start(
    *,
    actor: AbstractBaseUser,
    department: Department,
    data: bytes,
    file_name: str,
    file_format: str,
) -> ImportJob:
    """Keep an uploaded file and queue its dry run. Permission: manage_audience."""
    from audiences.tasks import validate_import_job_task

    _authorise(actor, department)
    job = ImportJob(
        department=department,
        created_by=actor if isinstance(actor, User) else None,
        file_name=file_name[:255],
        file_sha256=hashlib.sha256(data).hexdigest(),
        file_format=file_format,
    )
    job.file.save(f"{uuid.uuid4().hex}.{file_format}", ContentFile(data), save=False)
    job.save()
    transaction.on_commit(lambda: validate_import_job_task.delay(job.pk))
    return job


def import_job_validate(*, job_id: int) -> None:
    """Dry-run a queued job's file and store counts and errors. A second call does nothing."""
    if (
        ImportJob.objects.filter(pk=job_id, state=ImportState.QUEUED).update(
            state=ImportState.VALIDATING, state_changed_at=timezone.now()
        )
        != 1
    ):
        return
    job = ImportJob.objects.select_related("department").get(pk=job_id)
    report = recipients_import(
        actor=None,
        department=job.department,
        data=_job_bytes(job),
        file_name=job.file_name,
        file_format=job.file_format,
        dry_run=True,
        progress=_job_progress(job_id),
    )
    ImportJob.objects.filter(pk=job_id).update(
        state=ImportState.VALIDATED if report.ok else ImportState.REJECTED,
        counts=report.as_dict(),
        errors=[{"line": e.line, "reason": e.reason} for e in report.errors]
        + ([{"line": 0, "reason": report.file_error}] if report.file_error else []),
        total_rows=report.total,
        processed_rows=report.total,
        finished_at=None if report.ok else timezone.now(),
    )


@transaction.atomic
def import_job_confirm(*, actor: AbstractBaseUser, job: ImportJob) -> ImportJob:
    """Queue the real import of a checked job. Permission: manage_audience."""
    from audiences.tasks import apply_import_job_task

    _authorise(actor, job.department)
    claimed = ImportJob.objects.filter(pk=job.pk, state=ImportState.VALIDATED).update(
        state=ImportState.APPLY_QUEUED, confirmed_by=actor, processed_rows=0
    )
    if claimed != 1:
        raise ApplicationError(_("This import is not waiting for confirmation."))
    transaction.on_commit(lambda: apply_import_job_task.delay(job.pk))
    return ImportJob.objects.get(pk=job.pk)


def import_job_apply(*, job_id: int) -> None:
    """Import a confirmed job's file, all or nothing, as the person who confirmed it. Idempotent."""
    if (
        ImportJob.objects.filter(pk=job_id, state=ImportState.APPLY_QUEUED).update(
            state=ImportState.APPLYING, state_changed_at=timezone.now()
        )
        != 1
    ):
        return
    job = ImportJob.objects.select_related("department", "confirmed_by").get(pk=job_id)
    try:
        report = recipients_import(
            actor=job.confirmed_by,
            department=job.department,
            data=_job_bytes(job),
            file_name=job.file_name,
            file_format=job.file_format,
            progress=_job_progress(job_id),
        )
    except PermissionDenied:
        report = ImportReport(file_name=job.file_name, file_sha256=job.file_sha256, dry_run=False)
        report.file_error = _(
            "The person who confirmed this import may no longer manage this department's audience."
        )
    ImportJob.objects.filter(pk=job_id).update(
        state=ImportState.DONE if report.written else ImportState.FAILED,
        counts=report.as_dict(),
        errors=[{"line": e.line, "reason": e.reason} for e in report.errors]
        + ([{"line": 0, "reason": report.file_error}] if report.file_error else []),
        finished_at=timezone.now(),
    )
    if report.written:
        job.file.delete(save=False)


def _job_bytes(job: ImportJob) -> bytes:
    with job.file.open("rb") as handle:
        return bytes(handle.read())
