"""The sweeper: re-drives whatever a lost message, a dead worker or a broker outage left behind.

It runs every minute (delivery.sweep_dispatches) and reads only the database, so it finds
approved notices with no plan, stalled snapshots, stale claims, unknown outcomes, batches
whose message was lost and paused plans whose cause has cleared.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.channel import client_for_department
from audit.services import audit_record
from common.errors import ApplicationError
from delivery import enqueue
from delivery.audit_actions import DeliveryAuditAction as Action
from delivery.governor import GovernorUnavailable, get_governor
from delivery.models import Batch, BatchStatus, DeliveryPlan, PauseCode, PlanStatus
from delivery.privacy import anonymise_late_deliveries
from delivery.quota import monthly_calls_left
from delivery.services import rollup_check, service_window, uncertain
from delivery.services.lifecycle import plan_finish_if_complete, plan_resume
from delivery.services.outcomes import record_accepted
from dingtalk.errors import DingTalkError
from notices.models import Notice, Status

logger = logging.getLogger("delivery")

# A pause the sweeper lifts by itself once a call DingTalk does not meter says the cause is gone.
CREDENTIAL_PAUSES = (
    PauseCode.INVALID_CREDENTIALS,
    PauseCode.CHANNEL_UNCONFIGURED,
    PauseCode.SECRET_MISSING,
)


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Re-drive everything a lost message, a dead worker or a broker outage left behind.

    - approved notices with no plan (the broker was down at approval) and due scheduled ones;
    - plans whose snapshot stopped half-way;
    - batches claimed long ago (the worker died during the call): outcome unknown;
    - unknown batches: resent with identical content for DingTalk to reconcile while its
      same-day duplicate rule covers the first attempt, else held for a supervisor;
    - batches still queued a while after creation (their message was lost);
    - paused plans whose cause has cleared; plans whose last batch has an outcome finish;
    - a sample of recent plans' rollups recounted from their people (drift logged, repaired).
    """
    moment = now or timezone.now()
    stale = moment - timedelta(seconds=float(settings.DELIVERY_CLAIM_STALE_S))
    lost = moment - timedelta(seconds=float(settings.DELIVERY_QUEUED_STALE_S))
    counts = {"planned": _plan_due(moment, lost)}
    counts["requeued"] = 0
    counts["unknown"] = Batch.objects.filter(
        status=BatchStatus.CLAIMED, claimed_at__lt=stale
    ).update(
        status=BatchStatus.UNKNOWN,
        error_code="stale_claim",
        uncertain_since=uncertain.uncertain_since_first(),
    )
    counts["resent"], counts["held"] = _resend_unknown(moment)
    counts["requeued"] = _requeue_lost(lost)
    counts["service_window"] = service_window.sw_sweep(moment)
    counts["resumed"] = _resume_cleared()
    counts["finished"] = sum(
        int(plan_finish_if_complete(plan_id))
        for plan_id in DeliveryPlan.objects.filter(
            status=PlanStatus.SENDING, snapshot_done=True
        ).values_list("pk", flat=True)
    )
    counts["anonymised"] = anonymise_late_deliveries()
    checks = rollup_check.sample_check(now=moment)
    counts["rollups_checked"] = len(checks)
    counts["rollups_repaired"] = sum(int(check.repaired) for check in checks)
    return counts


def _plan_due(moment: datetime, lost: datetime) -> int:
    """Queue the planner for approved (or due scheduled) notices with no plan, and for plans
    whose snapshot stopped half-way. Returns how many it queued."""
    planned = 0
    due = Notice.objects.filter(
        Q(status=Status.APPROVED) | Q(status=Status.SCHEDULED, send_at__lte=moment),
        delivery_plan__isnull=True,
    ).filter(Q(send_at__isnull=True) | Q(send_at__lte=moment))
    for notice in due.only("pk", "tier", "high_risk")[:100]:
        enqueue.plan_notice(notice.pk, urgent=notice.is_urgent)
        planned += 1
    for notice_id, urgent in DeliveryPlan.objects.filter(
        status=PlanStatus.SENDING, snapshot_done=False, created_at__lte=lost
    ).values_list("notice_id", "urgent")[:100]:
        enqueue.plan_notice(notice_id, urgent=urgent)
        planned += 1
    return planned


def _resend_unknown(moment: datetime) -> tuple[int, int]:
    """Unknown batches: recorded as sent if their task id arrived after all; queued again with
    identical content while DingTalk's same-day rule covers the first attempt (audited); held
    for a supervisor otherwise. Returns how many were queued again and how many held."""
    resend: list[tuple[int, bool]] = []
    held = 0
    for batch in Batch.objects.filter(status=BatchStatus.UNKNOWN).select_related(
        "dispatch__plan__department", "dispatch__plan__notice"
    )[:500]:
        if batch.task_id is not None:
            # The call did return a task id after all: it went out.
            Batch.objects.filter(pk=batch.pk, status=BatchStatus.UNKNOWN).update(
                status=BatchStatus.CLAIMED
            )
            record_accepted(batch, batch.task_id)
            continue
        if not uncertain.resend_covered(batch.uncertain_since, moment):
            held += int(uncertain.hold_batch(batch, from_status=BatchStatus.UNKNOWN, moment=moment))
            continue
        with transaction.atomic():
            moved = Batch.objects.filter(pk=batch.pk, status=BatchStatus.UNKNOWN).update(
                status=BatchStatus.QUEUED, after_unknown=True
            )
            if moved == 1:
                audit_record(
                    actor=None,
                    action=Action.BATCH_UNKNOWN,
                    target=batch.dispatch.plan.notice,
                    department=batch.dispatch.plan.department,
                    data={"batch": batch.pk, "size": batch.size, "error": batch.error},
                )
        if moved == 1:
            resend.append((batch.pk, batch.urgent))
    enqueue.send_batch_groups(resend)
    return len(resend), held


def _requeue_lost(lost: datetime) -> int:
    """Queue again the batches of plans where nothing was claimed lately.

    A deep queue is normal (the governor paces a large send); only a plan where nothing was
    claimed lately has lost its messages, so only those are enqueued again.
    """
    stalled = (
        DeliveryPlan.objects.filter(
            status__in=(PlanStatus.SENDING, PlanStatus.DONE),
            dispatches__batches__status=BatchStatus.QUEUED,
            dispatches__batches__created_at__lt=lost,
        )
        .exclude(dispatches__batches__claimed_at__gte=lost)
        .values_list("pk", flat=True)
        .distinct()[:50]
    )
    requeued = 0
    for plan_id in list(stalled):
        queued = list(
            Batch.objects.filter(dispatch__plan_id=plan_id, status=BatchStatus.QUEUED)
            .order_by("pk")
            .values_list("pk", "urgent")[:5000]
        )
        enqueue.send_batch_groups(queued)
        requeued += len(queued)
    return requeued


def _resume_cleared() -> int:
    resumed = 0
    for plan in DeliveryPlan.objects.filter(status=PlanStatus.PAUSED).select_related("department"):
        if not pause_cleared(plan):
            continue
        try:
            plan_resume(actor=None, plan_id=plan.pk)
        except ApplicationError as exc:
            logger.info("delivery: plan %s stays paused: %s", plan.pk, exc.message)
            continue
        resumed += 1
    return resumed


def pause_cleared(plan: DeliveryPlan) -> bool:
    """Whether the cause of a pause is gone (checked with exempt calls only). A media id
    DingTalk forgot is cleared by resuming: plan_resume uploads the file again."""
    if plan.pause_code == PauseCode.MEDIA_EXPIRED:
        return True
    if plan.pause_code == PauseCode.GOVERNOR_DOWN:
        return get_governor().healthy()
    if plan.pause_code == PauseCode.QUOTA_EXHAUSTED:
        try:
            return monthly_calls_left(plan.department) > 0
        except GovernorUnavailable:
            return False
    if plan.pause_code in CREDENTIAL_PAUSES:
        try:
            client_for_department(plan.department).get_access_token(force_refresh=True)
        except (DingTalkError, ApplicationError):
            return False
        return True
    return False
