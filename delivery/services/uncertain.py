"""Sends whose outcome is unknown: resent only while DingTalk would drop a duplicate, else held.

A call that may have reached DingTalk without an answer (a read timeout, a worker killed
during the call) leaves its batch unknown. DingTalk drops the same content sent to the same
person twice in one calendar day, Asia/Shanghai (143106), so a resend is safe only while that
day lasts: the first attempt and the resend must fall on the same DingTalk day. Otherwise the
batch is held ("outcome unknown") on the notice's dashboard until a supervisor sends it again
or closes it; every step is audited.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import permissions as perms
from audit.services import audit_record
from common.errors import ApplicationError
from common.types import Actor
from delivery import enqueue
from delivery.audit_actions import DeliveryAuditAction as Action
from delivery.models import Batch, BatchStatus, Delivery, DeliveryState
from delivery.services.lifecycle import plan_finish_if_complete

DINGTALK_DAY_ZONE = ZoneInfo("Asia/Shanghai")


def dingtalk_day(moment: datetime) -> tuple[int, int, int]:
    """The calendar day DingTalk's same-content rule counts in (Asia/Shanghai), on DingTalk's
    clock: ours shifted by DELIVERY_DINGTALK_CLOCK_OFFSET_S (0 but in a drill or a test that
    brings DingTalk's midnight within reach)."""
    offset = timedelta(seconds=float(settings.DELIVERY_DINGTALK_CLOCK_OFFSET_S))
    local = (moment + offset).astimezone(DINGTALK_DAY_ZONE)
    return local.year, local.month, local.day


def resend_covered(first_attempt: datetime | None, moment: datetime) -> bool:
    """Whether DingTalk's same-day duplicate rule still covers a first attempt at ``moment``.

    The first attempt reached DingTalk (if it did) after it was claimed and before ``moment``:
    both on the same DingTalk day means it fell on that day too.
    """
    return first_attempt is not None and dingtalk_day(first_attempt) == dingtalk_day(moment)


def uncertain_since_first() -> Coalesce:
    """For an UPDATE that makes a batch unknown: keep the first uncertain attempt's claim time."""
    return Coalesce(F("uncertain_since"), F("claimed_at"), F("created_at"))


def hold_batch(batch: Batch, *, from_status: str, moment: datetime | None = None) -> bool:
    """Hold an unknown (or just re-claimed) batch for a supervisor. Audit: delivery.batch_held."""
    with transaction.atomic():
        moved = Batch.objects.filter(pk=batch.pk, status=from_status).update(
            status=BatchStatus.HELD, claim_token=""
        )
        if moved != 1:
            return False
        plan = batch.dispatch.plan
        _set_people_state(batch, DeliveryState.QUEUED, DeliveryState.UNKNOWN)
        audit_record(
            actor=None,
            action=Action.BATCH_HELD,
            target=plan.notice,
            department=plan.department,
            data={
                "batch": batch.pk,
                "size": batch.size,
                "first_attempt": batch.uncertain_since.isoformat()
                if batch.uncertain_since
                else None,
                "at": (moment or timezone.now()).isoformat(),
                "error": batch.error,
            },
        )
    plan_finish_if_complete(plan.pk)
    return True


def _set_people_state(batch: Batch, old: str, new: str) -> None:
    """The people of a notice's own batch (round 0) follow it into or out of "unknown"."""
    if batch.dispatch.round != 0:
        return
    Delivery.objects.filter(
        plan_id=batch.dispatch.plan_id,
        dingtalk_user_id__in=[str(u) for u in batch.userids],
        batch_id=batch.pk,
        state=old,
    ).update(state=new)


def _held_for(actor: Actor, notice_id: int, batch_id: int) -> Batch:
    batch = (
        Batch.objects.select_related("dispatch__plan__department", "dispatch__plan__notice")
        .filter(pk=batch_id, dispatch__plan__notice_id=notice_id)
        .first()
    )
    if batch is None:
        raise ApplicationError(_("No such batch on this notice."), code="batch_missing")
    perms.require_department_perm(actor, perms.APPROVE_NOTICE, batch.dispatch.plan.department)
    return batch


def batch_held_resend(*, actor: Actor, notice_id: int, batch_id: int) -> bool:
    """A supervisor sends a held batch again, accepting that some people may get it twice.

    PermissionDenied without the approve permission in the notice's department.
    Audit: delivery.batch_held_resent. Returns False if it was no longer held.
    """
    batch = _held_for(actor, notice_id, batch_id)
    with transaction.atomic():
        moved = Batch.objects.filter(pk=batch.pk, status=BatchStatus.HELD).update(
            status=BatchStatus.QUEUED, after_unknown=False, uncertain_since=None, claim_token=""
        )
        if moved != 1:
            return False
        plan = batch.dispatch.plan
        _set_people_state(batch, DeliveryState.UNKNOWN, DeliveryState.QUEUED)
        audit_record(
            actor=actor,
            action=Action.BATCH_HELD_RESENT,
            target=plan.notice,
            department=plan.department,
            data={"batch": batch.pk, "size": batch.size},
        )
    enqueue.send_batch_groups([(batch.pk, batch.urgent)])
    return True


def batch_held_close(*, actor: Actor, notice_id: int, batch_id: int) -> bool:
    """A supervisor closes a held batch without sending it: its people's outcome stays unknown.

    PermissionDenied without the approve permission in the notice's department.
    Audit: delivery.batch_held_closed. Returns False if it was no longer held.
    """
    batch = _held_for(actor, notice_id, batch_id)
    with transaction.atomic():
        moved = Batch.objects.filter(pk=batch.pk, status=BatchStatus.HELD).update(
            status=BatchStatus.CLOSED
        )
        if moved != 1:
            return False
        plan = batch.dispatch.plan
        audit_record(
            actor=actor,
            action=Action.BATCH_HELD_CLOSED,
            target=plan.notice,
            department=plan.department,
            data={"batch": batch.pk, "size": batch.size},
        )
    return True
