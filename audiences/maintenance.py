"""Housekeeping for background work whose worker died: stale import jobs and directory syncs.

A worker killed mid-run (OOM, deploy, lost node) leaves its row in validating/applying/running for
ever, and the page would show a progress bar that never moves. Nothing is half-written: an import
and a sync each write in one transaction that died with the worker. The sweeper marks such rows
failed, with a reason a person can act on, once they are older than every task time limit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from audiences.audit_actions import AudienceAuditAction
from audiences.models import DirectorySync, ImportJob, ImportState, SyncState
from audit.services import audit_record

_RUNNING_IMPORT_STATES = (ImportState.VALIDATING, ImportState.APPLYING)


def stale_work_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Mark import jobs and syncs stuck past AUDIENCES_STALE_WORK_AFTER_S as failed. Idempotent.

    Each row is moved with a conditional update on its stuck state, so a second sweep (or a
    second delivery of the task) finds nothing to do. Audit: audiences.import_failed and
    audiences.sync_failed, actor the system.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.AUDIENCES_STALE_WORK_AFTER_S)
    jobs = 0
    stale_jobs = ImportJob.objects.filter(state__in=_RUNNING_IMPORT_STATES).filter(
        Q(state_changed_at__lt=cutoff) | Q(state_changed_at__isnull=True, created_at__lt=cutoff)
    )
    for job in stale_jobs.select_related("department"):
        reason = _(
            "The worker stopped while %(step)s this file; nothing was written. Upload it again."
        ) % {"step": _("checking") if job.state == ImportState.VALIDATING else _("importing")}
        with transaction.atomic():
            moved = ImportJob.objects.filter(pk=job.pk, state=job.state).update(
                state=ImportState.FAILED,
                errors=[{"line": 0, "reason": reason}],
                finished_at=now,
            )
            if moved:
                jobs += 1
                audit_record(
                    actor=None,
                    action=AudienceAuditAction.IMPORT_FAILED,
                    target=job,
                    department=job.department,
                    target_label=job.file_name,
                    data={"stuck_in": job.state, "file_sha256": job.file_sha256},
                )
    syncs = 0
    stale_syncs = DirectorySync.objects.filter(state=SyncState.RUNNING).filter(
        Q(started_at__lt=cutoff) | Q(started_at__isnull=True, created_at__lt=cutoff)
    )
    for sync in stale_syncs.select_related("department"):
        with transaction.atomic():
            moved = DirectorySync.objects.filter(pk=sync.pk, state=SyncState.RUNNING).update(
                state=SyncState.FAILED,
                error=_("The worker stopped during the sync; nothing was changed. Run it again."),
                finished_at=now,
            )
            if moved:
                syncs += 1
                audit_record(
                    actor=None,
                    action=AudienceAuditAction.SYNC_FAILED,
                    target=sync,
                    department=sync.department,
                    data={"error": "worker stopped"},
                )
    return {"import_jobs": jobs, "syncs": syncs}
