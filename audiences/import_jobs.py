"""Background import jobs for large files (admin uploads over AUDIENCES_ADMIN_SYNC_MAX_ROWS).

An upload is kept and queued for a dry run; a person confirms the checked job; the real import
then runs as that person. Each step claims the job's state, so a second delivery does nothing.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import Department
from audiences import enqueue
from audiences.importing import ImportReport, Progress, recipients_import
from audiences.models import ImportJob, ImportState
from audiences.services import require_manage
from common.errors import ApplicationError
from common.types import Actor

logger = logging.getLogger("audiences.import")


@transaction.atomic
def import_job_start(
    *,
    actor: Actor,
    department: Department,
    data: bytes,
    file_name: str,
    file_format: str,
) -> ImportJob:
    """Keep an uploaded file and queue its dry run. Permission: manage_audience."""
    require_manage(actor, department)
    job = ImportJob(
        department=department,
        created_by=actor if isinstance(actor, User) else None,
        file_name=file_name[:255],
        file_sha256=hashlib.sha256(data).hexdigest(),
        file_format=file_format,
        language=translation.get_language() or settings.LANGUAGE_CODE,
    )
    job.file.save(f"{uuid.uuid4().hex}.{file_format}", ContentFile(data), save=False)
    job.save()
    transaction.on_commit(lambda: enqueue.import_validate(job.pk))
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
    with translation.override(job.language):  # the row errors, in the starter's language
        try:
            report = recipients_import(
                actor=None,
                department=job.department,
                data=_job_bytes(job),
                file_name=job.file_name,
                file_format=job.file_format,
                dry_run=True,
                progress=_job_progress(job_id),
            )
        except Exception:  # a job must end in a state the page can show, never hang
            logger.exception("import job %s could not be checked", job_id)
            report = _failed_report(job)
    ImportJob.objects.filter(pk=job_id).update(
        state=ImportState.VALIDATED if report.ok else ImportState.REJECTED,
        counts=report.as_dict(),
        errors=_job_errors(report),
        total_rows=report.total,
        processed_rows=report.total,
        finished_at=None if report.ok else timezone.now(),
    )


@transaction.atomic
def import_job_confirm(*, actor: Actor, job: ImportJob) -> ImportJob:
    """Queue the real import of a checked job. Permission: manage_audience."""
    require_manage(actor, job.department)
    claimed = ImportJob.objects.filter(pk=job.pk, state=ImportState.VALIDATED).update(
        state=ImportState.APPLY_QUEUED, confirmed_by=actor, processed_rows=0
    )
    if claimed != 1:
        raise ApplicationError(_("This import is not waiting for confirmation."))
    transaction.on_commit(lambda: enqueue.import_apply(job.pk))
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
    with translation.override(job.language):
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
            report = ImportReport(
                file_name=job.file_name, file_sha256=job.file_sha256, dry_run=False
            )
            report.file_error = _(
                "The person who confirmed this import may no longer manage this department's audience."
            )
        except Exception:  # nothing was written (one transaction); say so, never hang
            logger.exception("import job %s could not be imported", job_id)
            report = _failed_report(job)
    ImportJob.objects.filter(pk=job_id).update(
        state=ImportState.DONE if report.written else ImportState.FAILED,
        counts=report.as_dict(),
        errors=_job_errors(report),
        finished_at=timezone.now(),
    )
    if report.written:
        job.file.delete(save=False)


def _failed_report(job: ImportJob) -> ImportReport:
    report = ImportReport(file_name=job.file_name, file_sha256=job.file_sha256, dry_run=False)
    report.file_error = _(
        "The file could not be read to the end because of an internal error; nothing was written."
        " Save it again as CSV UTF-8 and upload it, or ask the system administrator."
    )
    return report


def _job_progress(job_id: int) -> Progress:
    def report(done: int, total: int) -> None:
        # Outside any transaction, so the page polling the job sees it at once.
        ImportJob.objects.filter(pk=job_id).update(processed_rows=done, total_rows=total)

    return report


def _job_errors(report: ImportReport) -> list[dict[str, Any]]:
    return [e.as_dict() for e in report.errors] + (
        [{"line": 0, "reason": report.file_error}] if report.file_error else []
    )


def _job_bytes(job: ImportJob) -> bytes:
    with job.file.open("rb") as handle:
        return bytes(handle.read())
