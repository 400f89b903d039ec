"""Service Window sends: a notice's followers reached by the department's Service Window.

- ``sw_plan_batches`` (called by the planner through ``delivery.channels``): one batch for a
  citywide notice (``is_to_all``, one call), else the followers' ids in lists of 1,000. Each
  batch's ``uuid`` is derived from the plan and the batch's place, fixed at creation.
- ``sw_send_batch`` (task ``delivery.send_service_window``): claim, the governor's grant, one
  call with the batch's uuid. ``uuid.repeat`` means an earlier attempt was accepted: recorded
  as accepted (task id from the send records), never delivered again. A call whose outcome is
  unknown (timeout, dead worker) becomes ``unknown`` and the sweeper sends it again with the
  same uuid: DingTalk delivers it, or answers ``uuid.repeat`` if the first attempt went through.
- ``sw_sweep`` (from delivery.services.sweeper.sweep): stale claims become unknown; unknown and
  long-queued batches are queued again.
- ``sw_recall`` (from followup.plan_recall_calls): recall within 24 hours.
"""

from __future__ import annotations

import uuid as uuidlib
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from accounts.channel import client_for_department
from audiences.models import DirectorySettings, Recipient, RecipientChannel, SubscriptionState
from audiences.selectors import segments_recipients
from audit.services import audit_record
from common.errors import ApplicationError
from common.i18n import in_message_language
from delivery import enqueue
from delivery.audit_actions import DeliveryAuditAction as Action
from delivery.governor import GovernorUnavailable, department_app_key, get_governor
from delivery.messages import NOTICE_TITLE
from delivery.models import BatchStatus, DeliveryPlan, ServiceWindowBatch
from dingtalk import service_window as sw
from dingtalk.errors import DingTalkError, UuidRepeated
from notices.models import Notice, Tier

UUID_NAMESPACE = uuidlib.UUID("6f1d3c1e-8a57-4d0e-9a54-5e7c2a1b9d20")
MAX_TEXT_CHARS = 2000
RECALL_WINDOW = timedelta(hours=24)


def service_account_id(department_id: int) -> str:
    return (
        DirectorySettings.objects.filter(department_id=department_id)
        .values_list("service_account_id", flat=True)
        .first()
        or ""
    )


def follower_recipients(notice: Notice) -> QuerySet[Recipient]:
    """The notice's subscribed followers (citywide: all of the department's)."""
    followers = Q(
        channel=RecipientChannel.FOLLOWER,
        subscription_state=SubscriptionState.SUBSCRIBED,
        erased_at__isnull=True,
    )
    if notice.tier == Tier.CITYWIDE:
        return Recipient.objects.filter(followers, department_id=notice.department_id)
    segments = list(notice.segments.all())
    if not segments:
        return Recipient.objects.none()
    return segments_recipients(segments).filter(followers)


def batch_uuid(plan: DeliveryPlan, seq: int) -> str:
    return str(uuidlib.uuid5(UUID_NAMESPACE, f"plan:{plan.pk}:notice:{plan.notice_id}:seq:{seq}"))


def sw_plan_batches(plan: DeliveryPlan, notice: Notice) -> list[int]:
    """Create the plan's Service Window batches once; returns the ids still queued."""
    if not service_account_id(notice.department_id):
        return []
    if not ServiceWindowBatch.objects.filter(plan=plan).exists():
        people = follower_recipients(notice)
        erased = Recipient.objects.filter(
            department_id=notice.department_id,
            channel=RecipientChannel.FOLLOWER,
            erased_at__isnull=False,
        ).exists()
        rows: list[ServiceWindowBatch] = []
        if notice.tier == Tier.CITYWIDE and not erased:
            size = people.count()
            if size:
                rows.append(ServiceWindowBatch(plan=plan, seq=0, to_all=True, size=size))
        else:
            ids = list(people.order_by("pk").values_list("dingtalk_user_id", flat=True))
            for seq, start in enumerate(range(0, len(ids), sw.MAX_LIST)):
                chunk = ids[start : start + sw.MAX_LIST]
                rows.append(ServiceWindowBatch(plan=plan, seq=seq, userids=chunk, size=len(chunk)))
        for row in rows:
            row.uuid = batch_uuid(plan, row.seq)
        ServiceWindowBatch.objects.bulk_create(rows, ignore_conflicts=True)
    return list(
        ServiceWindowBatch.objects.filter(plan=plan, status=BatchStatus.QUEUED).values_list(
            "pk", flat=True
        )
    )


def follower_body(notice: Notice) -> sw.Body:
    """The followers' message: the notice's title and text, Chinese first, as markdown.

    The Service Window has no voice, file or confirmation message; followers get the text.
    """
    title = " ".join(t for t in (notice.title_zh, notice.title_en) if t)[:60]
    title = title or in_message_language("both", NOTICE_TITLE)
    parts = [p for p in (notice.body_zh, notice.body_en) if p]
    text = "\n\n".join(parts)[:MAX_TEXT_CHARS] or title
    return sw.markdown_body(title, f"### {title}\n\n{text}")


def _claim(batch_id: int, now: datetime) -> ServiceWindowBatch | None:
    claimed = ServiceWindowBatch.objects.filter(
        pk=batch_id, status__in=(BatchStatus.QUEUED, BatchStatus.UNKNOWN)
    ).update(status=BatchStatus.CLAIMED, claimed_at=now, attempts=F("attempts") + 1)
    if claimed != 1:
        return None
    return ServiceWindowBatch.objects.select_related("plan__notice__department").get(pk=batch_id)


def sw_send_batch(batch_id: int) -> str:
    """Send one batch; returns its outcome. Raises a transient DingTalkError for a retry (the
    batch is queued again first). Safe to run twice: a second run finds nothing to claim."""
    now = timezone.now()
    batch = _claim(batch_id, now)
    if batch is None:
        return "skipped"
    plan = batch.plan
    notice = plan.notice
    department = notice.department
    if plan.recalled_at is not None:
        ServiceWindowBatch.objects.filter(pk=batch.pk).update(status=BatchStatus.CANCELLED)
        return "cancelled"
    try:
        decision = get_governor().acquire(
            app_key=department_app_key(department),
            api="follow_message_send",
            edition=department.dingtalk_edition,
        )
    except GovernorUnavailable:
        decision = None
    if decision is None or not decision.allowed:
        _back_to(batch, BatchStatus.QUEUED)
        return "wait"
    try:
        client = client_for_department(department)
        accepted = sw.send(
            client,
            service_account_id(department.pk),
            follower_body(notice),
            uuid=batch.uuid,
            userids=batch.userids,
            to_all=batch.to_all,
        )
        task_id, code = accepted.task_id, ""
    except UuidRepeated:
        record = sw.record_for_uuid(client, batch.uuid)
        task_id, code = (record.task_id if record else ""), "uuid_repeat"
    except DingTalkError as exc:
        if getattr(exc, "ambiguous", False):
            _back_to(batch, BatchStatus.UNKNOWN, "ambiguous", str(exc))
            return "unknown"
        if exc.is_transient:
            _back_to(batch, BatchStatus.QUEUED, type(exc).__name__, str(exc))
            raise
        _fail(batch, type(exc).__name__, str(exc))
        return "failed"
    except ApplicationError as exc:
        _fail(batch, exc.code, exc.message)
        return "failed"
    _accept(batch, task_id, code)
    return "accepted"


def _back_to(batch: ServiceWindowBatch, status: str, code: str = "", error: str = "") -> None:
    ServiceWindowBatch.objects.filter(pk=batch.pk, status=BatchStatus.CLAIMED).update(
        status=status, error_code=code, error=error[:300]
    )


@transaction.atomic
def _accept(batch: ServiceWindowBatch, task_id: str, code: str) -> None:
    now = timezone.now()
    moved = ServiceWindowBatch.objects.filter(pk=batch.pk, status=BatchStatus.CLAIMED).update(
        status=BatchStatus.ACCEPTED, task_id=task_id, accepted_at=now, error_code=code, error=""
    )
    if moved != 1:
        return
    DeliveryPlan.objects.filter(pk=batch.plan_id, first_accepted_at__isnull=True).update(
        first_accepted_at=now
    )
    notice = batch.plan.notice
    audit_record(
        actor=None,
        action=Action.SW_BATCH_ACCEPTED,
        target=notice,
        department=notice.department,
        data={
            "seq": batch.seq,
            "uuid": batch.uuid,
            "task_id": task_id,
            "to_all": batch.to_all,
            "people": batch.size,
            "uuid_repeat": code == "uuid_repeat",
        },
    )


@transaction.atomic
def _fail(batch: ServiceWindowBatch, code: str, error: str) -> None:
    ServiceWindowBatch.objects.filter(pk=batch.pk, status=BatchStatus.CLAIMED).update(
        status=BatchStatus.FAILED, error_code=code[:40], error=error[:300]
    )
    notice = batch.plan.notice
    audit_record(
        actor=None,
        action=Action.SW_BATCH_FAILED,
        target=notice,
        department=notice.department,
        data={"seq": batch.seq, "uuid": batch.uuid, "code": code, "error": error[:300]},
    )


def sw_sweep(now: datetime) -> int:
    """Stale claims become unknown; unknown and long-queued batches are queued again with their
    own uuid (safe: DingTalk answers uuid.repeat to a send it already has). Returns how many."""
    stale = now - timedelta(seconds=float(settings.DELIVERY_CLAIM_STALE_S))
    lost = now - timedelta(seconds=float(settings.DELIVERY_QUEUED_STALE_S))
    ServiceWindowBatch.objects.filter(status=BatchStatus.CLAIMED, claimed_at__lt=stale).update(
        status=BatchStatus.UNKNOWN, error_code="stale_claim"
    )
    due = ServiceWindowBatch.objects.filter(
        Q(status=BatchStatus.UNKNOWN) | Q(status=BatchStatus.QUEUED, created_at__lt=lost),
        plan__recalled_at__isnull=True,
    ).values_list("pk", "plan__urgent")
    rows = list(due)
    for batch_id, urgent in rows:
        enqueue.send_service_window([batch_id], urgent=urgent)
    return len(rows)


def cancel_queued(plan: DeliveryPlan) -> int:
    return ServiceWindowBatch.objects.filter(plan=plan, status=BatchStatus.QUEUED).update(
        status=BatchStatus.CANCELLED
    )


def sw_recall(plan: DeliveryPlan) -> tuple[int, int]:
    """Recall the plan's accepted sends of the last 24 hours: (recalled now, still to recall)."""
    now = timezone.now()
    pending = ServiceWindowBatch.objects.filter(
        plan=plan,
        status=BatchStatus.ACCEPTED,
        recalled_at__isnull=True,
        accepted_at__gte=now - RECALL_WINDOW,
    ).exclude(task_id="")
    done = 0
    for batch in pending.select_related("plan__notice__department"):
        department = batch.plan.notice.department
        try:
            sw.recall(client_for_department(department), batch.task_id)
        except (DingTalkError, ApplicationError):
            continue
        ServiceWindowBatch.objects.filter(pk=batch.pk).update(recalled_at=now)
        audit_record(
            actor=None,
            action=Action.SW_RECALLED,
            target=batch.plan.notice,
            department=department,
            data={"seq": batch.seq, "task_id": batch.task_id},
        )
        done += 1
    return done, pending.count()
