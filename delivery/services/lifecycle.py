"""A plan's lifecycle after it starts: pause (with a reason staff can act on), resume, finish.

The notice's own status follows through notices.delivery_status, in the same transaction
as the plan's change and its audit event.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from accounts import permissions as perms
from audit.services import audit_record
from common.errors import ApplicationError
from common.types import Actor
from delivery import enqueue, media
from delivery.audit_actions import DeliveryAuditAction as Action
from delivery.models import (
    Batch,
    BatchStatus,
    DeliveryPlan,
    PauseCode,
    PlanStatus,
    ServiceWindowBatch,
)
from notices.delivery_status import notice_mark_paused, notice_mark_resumed, notice_mark_sent
from notices.reapproval import notice_check_before_resume

# Stored in English; pages translate them for the reader (DeliveryPlan.pause_reason_text).
QUOTA_USED_UP = gettext_noop("The month's DingTalk API quota is used up.")
# The pause code of a plan whose notice went back for approval when it was to resume: the
# planner starts it again after the new approval (planner.plan_start), never the sweeper.
APPROVAL_VOIDED = "approval_voided"
WAITS_FOR_APPROVAL = gettext_noop(
    "The notice waits for approval again: it resumes by itself once it is approved."
)


def plan_pause(plan_id: int, *, code: str, reason: str) -> bool:
    """Pause a sending plan with a reason staff can act on; nothing sent is sent again.

    ``code`` is a PauseCode, or the code of the ApplicationError that stopped the send.
    Audit: delivery.paused.
    """
    with transaction.atomic():
        moved = DeliveryPlan.objects.filter(pk=plan_id, status=PlanStatus.SENDING).update(
            status=PlanStatus.PAUSED, pause_code=code[:40], pause_reason=reason[:300]
        )
        if moved != 1:
            return False
        plan = DeliveryPlan.objects.select_related("notice").get(pk=plan_id)
        notice_mark_paused(plan.notice_id, reason=reason)
        audit_record(
            actor=None,
            action=Action.PAUSED,
            target=plan.notice,
            department=plan.department,
            data={"code": code, "reason": reason},
        )
    return True


def plan_resume(*, actor: Actor, plan_id: int) -> int:
    """Resume a paused plan and re-enqueue what is still queued. Returns batches enqueued.

    ``actor`` None is the sweeper, once the cause is gone (sweeper.pause_cleared); a person
    needs the approve permission in the plan's department (PermissionDenied). A plan paused
    on a media id DingTalk forgot uploads the file again first (ApplicationError if that
    fails: the plan stays paused). The send-time check of notices.reapproval runs first: if the
    approved hash, risk or reach no longer holds, nothing is sent, the notice goes back for
    approval and the plan waits for it (ApplicationError for a person). Audit: delivery.resumed.
    """
    plan = DeliveryPlan.objects.select_related("department").get(pk=plan_id)
    if actor is not None:
        perms.require_department_perm(actor, perms.APPROVE_NOTICE, plan.department)
    if plan.status == PlanStatus.PAUSED and plan.pause_code == PauseCode.MEDIA_EXPIRED:
        media.renew_for_plan(plan_id)
    refused = _recheck_approval(plan_id)
    if refused:
        if actor is not None:
            raise ApplicationError(refused, code=APPROVAL_VOIDED)
        return 0
    with transaction.atomic():
        moved = DeliveryPlan.objects.filter(pk=plan_id, status=PlanStatus.PAUSED).update(
            status=PlanStatus.SENDING, pause_code="", pause_reason=""
        )
        if moved != 1:
            return 0
        plan = DeliveryPlan.objects.select_related("notice").get(pk=plan_id)
        notice_mark_resumed(plan.notice_id)
        audit_record(
            actor=actor, action=Action.RESUMED, target=plan.notice, department=plan.department
        )
    queued = list(
        Batch.objects.filter(dispatch__plan_id=plan_id, status=BatchStatus.QUEUED).values_list(
            "pk", "urgent"
        )
    )
    enqueue.send_batch_groups(queued)
    if not plan.snapshot_done:
        enqueue.plan_notice(plan.notice_id, urgent=plan.urgent)
    plan_finish_if_complete(plan_id)
    return len(queued)


def _recheck_approval(plan_id: int) -> str:
    """The send-time check before a paused plan resumes (notices.reapproval); on a difference
    the notice goes back for approval and the plan stays paused with APPROVAL_VOIDED. Returns
    the translated refusal, or "" when the plan may resume."""
    with transaction.atomic():
        plan = DeliveryPlan.objects.select_for_update().get(pk=plan_id)
        if plan.status != PlanStatus.PAUSED:
            return ""
        if plan.pause_code == APPROVAL_VOIDED:
            return _(WAITS_FOR_APPROVAL)
        check = notice_check_before_resume(plan.notice_id)
        if check.ok or check.code in ("missing", "not_approved"):
            return ""
        DeliveryPlan.objects.filter(pk=plan_id).update(
            pause_code=APPROVAL_VOIDED, pause_reason=check.reason[:300]
        )
    return _(check.reason)


def plan_finish_if_complete(plan_id: int) -> bool:
    """Sending is over when the snapshot is done and no batch of round 0, nor any Service
    Window send, is still open.

    Audit: delivery.dispatch_finished, with the batches' outcomes and the notice's status.
    """
    open_batches = Batch.objects.filter(
        dispatch__plan_id=plan_id,
        dispatch__round=0,
        status__in=(BatchStatus.QUEUED, BatchStatus.CLAIMED, BatchStatus.UNKNOWN),
    )
    if open_batches.exists():
        return False
    if ServiceWindowBatch.objects.filter(
        plan_id=plan_id, status__in=(BatchStatus.QUEUED, BatchStatus.CLAIMED, BatchStatus.UNKNOWN)
    ).exists():
        return False
    with transaction.atomic():
        moved = DeliveryPlan.objects.filter(
            pk=plan_id, status=PlanStatus.SENDING, snapshot_done=True
        ).update(status=PlanStatus.DONE, finished_at=timezone.now())
        if moved != 1:
            return False
        plan = DeliveryPlan.objects.select_related("notice").get(pk=plan_id)
        failed = Batch.objects.filter(dispatch__plan_id=plan_id, status=BatchStatus.FAILED).count()
        final = notice_mark_sent(plan.notice_id, failed=bool(failed))
        counts = dict(
            Batch.objects.filter(dispatch__plan_id=plan_id)
            .values("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        audit_record(
            actor=None,
            action=Action.DISPATCH_FINISHED,
            target=plan.notice,
            department=plan.department,
            data={"planned": plan.planned, "batches": counts, "status": final},
        )
    return True
