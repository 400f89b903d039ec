"""The delivery engine's writes: plan, send, reconcile, receipts, pause/resume, finish.

Rules that make "ran twice, sent once" hold:

- every status moves by a conditional UPDATE (``filter(pk=..., status=X).update(status=Y)``)
  and work continues only when exactly one row changed;
- the per-recipient rows and batches are the outbox: they are committed before any send is
  enqueued, and the sweeper re-enqueues whatever a lost message or a dead worker left behind;
- no transaction is open across a DingTalk call: a batch is claimed (commit), sent, and the
  outcome written (commit);
- a call whose outcome is ambiguous (read timeout, dropped connection, a worker killed during
  the call) marks its batch ``unknown``; it is resent with identical content, and DingTalk's
  duplicate-content drop (143106) in the resend's result shows who already had it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from accounts.channel import client_for_department
from accounts.models import Department
from audiences.models import Recipient, SubscriptionState
from audiences.selectors import segments_recipients
from audit.services import audit_record
from common.errors import ApplicationError
from delivery import media, messages, planning
from delivery.audit_actions import DeliveryAuditAction as Action
from delivery.governor import GovernorUnavailable, content_fingerprint, get_governor
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    Dispatch,
    PlanStatus,
)
from dingtalk.client import DingTalkClient
from dingtalk.errors import (
    DingTalkError,
    InvalidCredentials,
    InvalidRequest,
    PermissionDenied,
    QuotaExhausted,
    ResultUnavailable,
    Throttled,
    TransportError,
)
from notices.models import Notice, Status, Tier

logger = logging.getLogger("delivery")

FLOW_CONTROL_REQUEUE = frozenset({143103, 143104, 143203, 143204})
DUPLICATE_CONTENT = frozenset({143106, 143206})
PAUSING_ERRORS = (InvalidCredentials, PermissionDenied, QuotaExhausted)
# Enqueue hook: (batch_id, urgent) -> None; tasks.py installs the Celery one.
Enqueue = Callable[[int, bool], None]


class SnapshotRaced(Exception):  # noqa: N818 - a state, like the dingtalk errors
    """Another planner moved the snapshot cursor first; this chunk's transaction rolls back."""


@dataclass(frozen=True)
class SendOutcome:
    outcome: str  # sent | skipped | retry | paused | failed | unknown
    retry_in: float = 0.0
    detail: str = ""


def _now() -> datetime:
    return timezone.now()


def _enqueue_batches(batch_ids: Iterable[tuple[int, bool]]) -> None:
    from delivery.tasks import enqueue_batch

    for batch_id, urgent in batch_ids:
        enqueue_batch(batch_id, urgent)


def _client(department: Department) -> DingTalkClient:
    return client_for_department(department)


def is_urgent(notice: Notice) -> bool:
    return notice.tier == Tier.CITYWIDE or notice.high_risk


# --- entry point from notices --------------------------------------------------------------


def dispatch_on_approved(notice_id: int) -> None:
    """Called by notices after the final approval commits: only enqueues the planner.

    If the broker is down the notice stays approved and the sweeper plans it later.
    """
    from delivery.tasks import plan_notice_task

    notice = Notice.objects.filter(pk=notice_id).only("tier", "high_risk").first()
    urgent = notice is not None and is_urgent(notice)
    try:
        plan_notice_task.apply_async(
            args=(notice_id,), queue=_queue(urgent), priority=9 if urgent else 5
        )
    except Exception:
        logger.exception("delivery: could not enqueue the plan of notice %s", notice_id)


def _queue(urgent: bool) -> str:
    from config.settings.celery import Queues

    return Queues.URGENT if urgent else Queues.SEND


# --- planning --------------------------------------------------------------------------------


def audience_recipients(notice: Notice) -> QuerySet[Recipient]:
    """Citywide: every subscribed recipient of the department; otherwise the union of segments."""
    if notice.tier == Tier.CITYWIDE:
        return Recipient.objects.filter(
            department_id=notice.department_id,
            subscription_state=SubscriptionState.SUBSCRIBED,
            erased_at__isnull=True,
        )
    segments = list(notice.segments.all())
    if not segments:
        return Recipient.objects.none()
    return segments_recipients(segments).filter(erased_at__isnull=True)


def org_wide_possible(notice: Notice) -> bool:
    """to_all_user reaches the whole DingTalk organisation: only when nobody there opted out."""
    if notice.tier != Tier.CITYWIDE or notice.requires_confirmation:
        return False
    others = Recipient.objects.filter(department_id=notice.department_id).exclude(
        subscription_state=SubscriptionState.SUBSCRIBED, erased_at__isnull=True
    )
    return not others.exists()


def org_wide_sends_today(department: Department) -> int:
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return Batch.objects.filter(
        dispatch__plan__department=department, to_all=True, created_at__gte=start
    ).count()


def choose_plan_strategy(notice: Notice) -> str:
    return planning.choose_strategy(
        tier=notice.tier,
        tracked=notice.tier != Tier.CITYWIDE,
        org_wide_possible=org_wide_possible(notice),
        personal_links=notice.requires_confirmation,
        org_wide_used_today=org_wide_sends_today(notice.department),
    )


def _due(notice: Notice) -> bool:
    return notice.send_at is None or notice.send_at <= _now()


def plan_start(notice_id: int) -> DeliveryPlan | None:
    """Move an approved (or due scheduled) notice to sending and create its plan, once."""
    with transaction.atomic():
        notice = Notice.objects.select_related("department").filter(pk=notice_id).first()
        if notice is None:
            return None
        plan = DeliveryPlan.objects.filter(notice_id=notice_id).first()
        if plan is not None:
            return plan
        if notice.status not in (Status.APPROVED, Status.SCHEDULED) or not _due(notice):
            return None
        moved = Notice.objects.filter(
            pk=notice_id, status__in=(Status.APPROVED, Status.SCHEDULED)
        ).update(status=Status.SENDING, status_reason="", updated_at=_now())
        if moved != 1:
            return None
        strategy = choose_plan_strategy(notice)
        plan = DeliveryPlan.objects.create(
            notice=notice,
            department=notice.department,
            strategy=strategy,
            status=PlanStatus.SENDING,
            urgent=is_urgent(notice),
            approved_at=notice.approved_at,
            next_reminder_at=(
                _now() + timedelta(minutes=notice.remind_after_minutes)
                if notice.max_reminders and notice.remind_after_minutes
                else None
            ),
        )
        audit_record(
            actor=None,
            action=Action.DISPATCH_STARTED,
            target=notice,
            department=notice.department,
            data={"strategy": strategy, "version_hash": notice.version_hash},
        )
    return plan


def _dispatch(plan: DeliveryPlan, notice: Notice, language: str, round_: int = 0) -> Dispatch:
    message = messages.build_message(notice, language, round_)
    dispatch, _ = Dispatch.objects.get_or_create(
        plan=plan,
        language=language,
        round=round_,
        defaults={"message": message, "content_hash": content_fingerprint(message)},
    )
    return dispatch


def plan_broadcast_batch(plan: DeliveryPlan, notice: Notice) -> Batch | None:
    """The single organisation-wide batch, created before the snapshot so it goes out first."""
    if plan.strategy != planning.Strategy.ORG_WIDE:
        return None
    dispatch = _dispatch(plan, notice, "both")
    batch, _ = Batch.objects.get_or_create(
        dispatch=dispatch,
        seq=0,
        defaults={"to_all": True, "size": 0, "urgent": plan.urgent},
    )
    Dispatch.objects.filter(pk=dispatch.pk, next_seq=0).update(next_seq=1)
    return batch


def plan_snapshot_chunk(plan_id: int, chunk: int | None = None) -> tuple[list[int], bool]:
    """Write the next chunk of recipients (and their batches); returns (batch ids, finished).

    Raises SnapshotRaced when another planner wrote this chunk first.

    The cursor moves with a conditional update inside the chunk's transaction, so two planners
    never write the same chunk: the second one's update matches nothing and rolls back.
    """
    with transaction.atomic():
        plan = DeliveryPlan.objects.select_related("notice", "department").get(pk=plan_id)
        if plan.snapshot_done:
            return [], True
        # A small first chunk puts the first batches on the wire while the rest is written.
        size = chunk or (
            int(settings.DELIVERY_SNAPSHOT_FIRST_CHUNK)
            if plan.snapshot_cursor == 0
            else int(settings.DELIVERY_SNAPSHOT_CHUNK)
        )
        notice = plan.notice
        rows = list(
            audience_recipients(notice)
            .filter(pk__gt=plan.snapshot_cursor)
            .order_by("pk")
            .values_list("pk", "dingtalk_user_id", "language", "district_id")[:size]
        )
        finished = len(rows) < size
        cursor = rows[-1][0] if rows else plan.snapshot_cursor
        moved = DeliveryPlan.objects.filter(
            pk=plan.pk, snapshot_cursor=plan.snapshot_cursor, snapshot_done=False
        ).update(snapshot_cursor=cursor, snapshot_done=finished, planned=F("planned") + len(rows))
        if moved != 1:
            raise SnapshotRaced(plan_id)
        new_batches: list[Batch] = []
        deliveries: list[DeliveryRow] = []
        if plan.strategy == planning.Strategy.ORG_WIDE:
            dispatch = _dispatch(plan, notice, "both")
            batch = Batch.objects.get(dispatch=dispatch, seq=0)
            accepted = batch.status == BatchStatus.ACCEPTED
            state = DeliveryState.ACCEPTED if accepted else DeliveryState.QUEUED
            at = batch.accepted_at if accepted else None
            for pk, userid, _language, district in rows:
                deliveries.append((plan.pk, dispatch.pk, batch.pk, pk, userid, district, state, at))
            _bulk_insert_deliveries(deliveries)
            if finished:
                Batch.objects.filter(pk=batch.pk).update(size=plan.planned + len(rows))
            return [], finished
        capped = _over_daily_cap(plan, [userid for _, userid, _, _ in rows])
        by_language: dict[str, list[tuple[int, str, int | None]]] = defaultdict(list)
        for pk, userid, language, district in rows:
            if userid in capped:
                # DingTalk would drop them silently (143105): record it instead of sending.
                deliveries.append(
                    (
                        plan.pk,
                        _dispatch(plan, notice, "en").pk,
                        None,
                        pk,
                        userid,
                        district,
                        DeliveryState.FORBIDDEN,
                        None,
                    )
                )
                continue
            by_language[messages.recipient_language(language, notice)].append(
                (pk, userid, district)
            )
        per_call = 1 if plan.strategy == planning.Strategy.PER_PERSON else 100
        pending: list[tuple[Batch, list[tuple[int, str, int | None]], Dispatch]] = []
        for language, people in sorted(by_language.items()):
            dispatch = _dispatch(plan, notice, language)
            groups = [people[i : i + per_call] for i in range(0, len(people), per_call)]
            start = dispatch.next_seq
            Dispatch.objects.filter(pk=dispatch.pk).update(next_seq=F("next_seq") + len(groups))
            for offset, group in enumerate(groups):
                batch = Batch(
                    dispatch=dispatch,
                    seq=start + offset,
                    userids=[userid for _, userid, _ in group],
                    size=len(group),
                    urgent=plan.urgent,
                )
                new_batches.append(batch)
                pending.append((batch, group, dispatch))
        Batch.objects.bulk_create(new_batches, batch_size=1000)
        if any(b.pk is None for b in new_batches):
            # Backends that do not return ids from bulk inserts: read them back by natural key.
            ids = {
                (d, s): batch_pk
                for d, s, batch_pk in Batch.objects.filter(
                    dispatch__plan=plan, seq__in=[b.seq for b in new_batches]
                ).values_list("dispatch_id", "seq", "pk")
            }
            for b in new_batches:
                b.pk = ids[(b.dispatch_id, b.seq)]
        for batch, group, dispatch in pending:
            for recipient_pk, userid, person_district in group:
                deliveries.append(
                    (
                        plan.pk,
                        dispatch.pk,
                        batch.pk,
                        recipient_pk,
                        userid,
                        person_district,
                        DeliveryState.QUEUED,
                        None,
                    )
                )
        _bulk_insert_deliveries(deliveries)
    return [b.pk for b in new_batches], finished


# plan, dispatch, batch, recipient, DingTalk user id, district, state, accepted_at
DeliveryRow = tuple[int, int, int | None, int, str, int | None, str, datetime | None]
DELIVERY_COPY_COLUMNS = (
    "plan_id",
    "dispatch_id",
    "batch_id",
    "recipient_id",
    "dingtalk_user_id",
    "district_id",
    "state",
    "accepted_at",
    "reminders_sent",
    "outreach",
    "outreach_outcome",
)


def _over_daily_cap(plan: DeliveryPlan, userids: list[str]) -> set[str]:
    """People of this chunk who already had the day's share of this app's notices.

    DingTalk caps each person at 500 notices a day per app and drops the rest silently; the
    governor's per-person limit (DELIVERY_LIMITS["per_person_daily"]) stays below it.
    """
    cap = int(settings.DELIVERY_LIMITS["per_person_daily"])
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return set(
        Delivery.objects.filter(
            plan__department_id=plan.department_id,
            dingtalk_user_id__in=userids,
            accepted_at__gte=start,
        )
        .values("dingtalk_user_id")
        .annotate(n=Count("pk"))
        .filter(n__gte=cap)
        .values_list("dingtalk_user_id", flat=True)
    )


def _bulk_insert_deliveries(rows: list[DeliveryRow]) -> None:
    """COPY on PostgreSQL (one round trip, no model instances), bulk INSERT elsewhere."""
    if connection.vendor != "postgresql" or len(rows) < 500:
        Delivery.objects.bulk_create(
            [
                Delivery(
                    plan_id=plan,
                    dispatch_id=dispatch,
                    batch_id=batch,
                    recipient_id=recipient,
                    dingtalk_user_id=userid,
                    district_id=district,
                    state=state,
                    accepted_at=accepted_at,
                )
                for plan, dispatch, batch, recipient, userid, district, state, accepted_at in rows
            ],
            batch_size=2000,
        )
        return
    table = Delivery._meta.db_table
    columns = ", ".join(DELIVERY_COPY_COLUMNS)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor under Django's wrapper
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*row, 0, "", ""))


def plan_notice(notice_id: int) -> int:
    """Plan a notice end to end: start, then snapshot chunk by chunk, enqueuing as it goes.

    Returns the number of batches enqueued. Safe to run twice (and to resume after a crash:
    the cursor says where the snapshot stopped).
    """
    plan = plan_start(notice_id)
    if plan is None or plan.status not in (PlanStatus.SENDING, PlanStatus.PAUSED):
        return 0
    notice = plan.notice
    try:
        # Uploaded before any message is built; a transient DingTalkError raises for a retry.
        media.ensure_media(notice)
    except ApplicationError as exc:
        plan_pause(plan.pk, code=exc.code, reason=exc.message)
        return 0
    broadcast = plan_broadcast_batch(plan, notice)
    enqueued = 0
    if broadcast is not None and broadcast.status == BatchStatus.QUEUED:
        _enqueue_batches([(broadcast.pk, plan.urgent)])
        enqueued += 1
    finished = plan.snapshot_done
    while not finished:
        try:
            batch_ids, finished = plan_snapshot_chunk(plan.pk)
        except SnapshotRaced:
            # Another planner holds this chunk (a redelivered message): let it finish.
            break
        _enqueue_batches((batch_id, plan.urgent) for batch_id in batch_ids)
        enqueued += len(batch_ids)
    if finished:
        plan_finish_if_complete(plan.pk)
    return enqueued


# --- sending ---------------------------------------------------------------------------------


def _release(batch_id: int, *, error: str = "", code: str = "") -> None:
    Batch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
        status=BatchStatus.QUEUED, error=error[:300], error_code=code[:40]
    )


def batch_send(batch_id: int) -> SendOutcome:
    """Send one batch if it is still queued; record DingTalk's task id. Idempotent."""
    # One statement claims the batch and checks its plan still sends (re-queued flow-control
    # drops and reminders go out after the plan itself is done); a paused plan's batches stay
    # queued for the resume.
    claimed = Batch.objects.filter(
        pk=batch_id,
        status=BatchStatus.QUEUED,
        dispatch__plan__status__in=(PlanStatus.SENDING, PlanStatus.DONE),
    ).update(status=BatchStatus.CLAIMED, claimed_at=_now(), attempts=F("attempts") + 1)
    if claimed != 1:
        return SendOutcome("skipped", detail="not queued or plan not sending")
    batch = Batch.objects.select_related("dispatch__plan__department").get(pk=batch_id)
    dispatch = batch.dispatch
    plan = dispatch.plan
    department = plan.department
    app_key = department.dingtalk_app_key or f"department:{department.code}"
    try:
        decision = get_governor().acquire(
            app_key=app_key,
            api="asyncsend_v2",
            recipients=max(batch.size, 1),
            edition=department.dingtalk_edition,
        )
    except GovernorUnavailable as exc:
        _release(batch_id)
        plan_pause(plan.pk, code="governor_down", reason=str(exc))
        return SendOutcome("paused", detail="governor unavailable")
    if not decision.allowed:
        _release(batch_id)
        if decision.reason == "monthly_quota":
            plan_pause(
                plan.pk,
                code="quota_exhausted",
                reason="The month's DingTalk API quota is used up.",
            )
            return SendOutcome("paused", detail="quota")
        return SendOutcome("retry", retry_in=decision.wait_s, detail=decision.reason)
    try:
        client = _client(department)
        msg = dispatch.message
        if batch.userids and messages.CONFIRM_PLACEHOLDER in str(msg):
            delivery_id = (
                Delivery.objects.filter(plan=plan, dingtalk_user_id=batch.userids[0])
                .values_list("pk", flat=True)
                .first()
            )
            msg = messages.personalise(msg, confirm_url(delivery_id or 0))
        result = client.send(
            msg,
            userids=list(batch.userids),
            dept_ids=[int(d) for d in batch.dept_ids],
            to_all_user=batch.to_all,
        )
    except ApplicationError as exc:
        _release(batch_id)
        plan_pause(plan.pk, code=exc.code, reason=exc.message)
        return SendOutcome("paused", detail=exc.code)
    except TransportError as exc:
        if exc.ambiguous:
            _mark_unknown(batch_id, str(exc))
            return SendOutcome("unknown", detail=str(exc))
        _release(batch_id, error=str(exc), code="transport")
        return SendOutcome("retry", retry_in=2.0, detail=str(exc))
    except Throttled as exc:
        _release(batch_id, error=str(exc), code=str(exc.errcode or exc.scope))
        try:
            get_governor().pause(app_key=app_key, seconds=exc.retry_after)
        except GovernorUnavailable:
            logger.warning("delivery: governor down while pausing %s", app_key)
        return SendOutcome("retry", retry_in=exc.retry_after, detail=str(exc))
    except PAUSING_ERRORS as exc:
        _release(batch_id, error=str(exc), code=str(exc.errcode or type(exc).__name__))
        plan_pause(plan.pk, code=type(exc).__name__, reason=_pause_text(exc))
        return SendOutcome("paused", detail=str(exc))
    except InvalidRequest as exc:
        _fail_batch(batch_id, exc)
        return SendOutcome("failed", detail=str(exc))
    except DingTalkError as exc:
        if exc.is_transient:
            _release(batch_id, error=str(exc), code=str(exc.errcode or "transient"))
            return SendOutcome("retry", retry_in=2.0, detail=str(exc))
        _fail_batch(batch_id, exc)
        return SendOutcome("failed", detail=str(exc))
    _record_accepted(batch, result.task_id)
    return SendOutcome("sent", detail=str(result.task_id))


def _pause_text(exc: DingTalkError) -> str:
    if isinstance(exc, InvalidCredentials):
        return (
            "DingTalk refused the department's app key or secret. Fix the credentials, then resume."
        )
    if isinstance(exc, QuotaExhausted):
        return "DingTalk's monthly API quota for this app is used up."
    return "DingTalk refused the app (revoked, or a permission or IP whitelist is missing)."


def confirm_url(delivery_id: int) -> str:
    path = reverse("delivery:confirm", args=[messages.confirm_token(delivery_id)])
    return str(settings.DELIVERY_PUBLIC_BASE_URL).rstrip("/") + path


def _record_accepted(batch: Batch, task_id: int) -> None:
    now = _now()
    first_poll = now + timedelta(seconds=planning.RECEIPT_POLL_OFFSETS_S[0])
    dispatch = batch.dispatch
    with transaction.atomic():
        moved = Batch.objects.filter(pk=batch.pk, status=BatchStatus.CLAIMED).update(
            status=BatchStatus.ACCEPTED,
            task_id=task_id,
            accepted_at=now,
            next_poll_at=first_poll,
            error="",
            error_code="",
        )
        if moved != 1:
            # The sweeper declared the call unknown meanwhile; keep the task id for reconciling.
            Batch.objects.filter(pk=batch.pk, task_id__isnull=True).update(task_id=task_id)
            return
        if dispatch.round == 0:
            Delivery.objects.filter(batch_id=batch.pk, state=DeliveryState.QUEUED).update(
                state=DeliveryState.ACCEPTED, accepted_at=now
            )
        if dispatch.plan.first_accepted_at is None:
            DeliveryPlan.objects.filter(pk=dispatch.plan_id, first_accepted_at__isnull=True).update(
                first_accepted_at=now
            )
        # Every batch outcome is on the trail, with DingTalk's task id for later reconciliation.
        audit_record(
            actor=None,
            action=Action.BATCH_ACCEPTED,
            target=dispatch.plan.notice,
            department=dispatch.plan.department_id and dispatch.plan.department,
            data={
                "batch": batch.pk,
                "size": batch.size,
                "task_id": task_id,
                "round": dispatch.round,
            },
        )
    # Only the last batch of a dispatch checks whether the plan is complete (one query per
    # batch saved); the planner and the sweeper check too.
    if dispatch.plan.snapshot_done and batch.seq + 1 >= dispatch.next_seq:
        plan_finish_if_complete(dispatch.plan_id)


def _mark_unknown(batch_id: int, error: str) -> None:
    Batch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
        status=BatchStatus.UNKNOWN, error=error[:300], error_code="ambiguous"
    )


def _fail_batch(batch_id: int, exc: DingTalkError) -> None:
    with transaction.atomic():
        moved = Batch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
            status=BatchStatus.FAILED, error=str(exc)[:300], error_code=str(exc.errcode or "")
        )
        if moved != 1:
            return
        batch = Batch.objects.select_related("dispatch__plan__notice").get(pk=batch_id)
        if batch.dispatch.round == 0:
            Delivery.objects.filter(batch_id=batch_id, state=DeliveryState.QUEUED).update(
                state=DeliveryState.FAILED, code=exc.errcode
            )
        audit_record(
            actor=None,
            action=Action.BATCH_FAILED,
            target=batch.dispatch.plan.notice,
            department=batch.dispatch.plan.department_id and batch.dispatch.plan.department,
            data={
                "batch": batch_id,
                "size": batch.size,
                "errcode": exc.errcode,
                "error": str(exc)[:200],
            },
        )
    plan_finish_if_complete(batch.dispatch.plan_id)


# --- pause, resume, finish -----------------------------------------------------------------


def plan_pause(plan_id: int, *, code: str, reason: str) -> bool:
    """Pause a sending plan with a reason staff can act on; nothing sent is sent again."""
    with transaction.atomic():
        moved = DeliveryPlan.objects.filter(pk=plan_id, status=PlanStatus.SENDING).update(
            status=PlanStatus.PAUSED, pause_code=code[:40], pause_reason=reason[:300]
        )
        if moved != 1:
            return False
        plan = DeliveryPlan.objects.select_related("notice").get(pk=plan_id)
        Notice.objects.filter(pk=plan.notice_id, status=Status.SENDING).update(
            status=Status.PAUSED, status_reason=reason[:500], updated_at=_now()
        )
        audit_record(
            actor=None,
            action=Action.PAUSED,
            target=plan.notice,
            department=plan.department,
            data={"code": code, "reason": reason},
        )
    return True


def plan_resume(*, actor: Any, plan_id: int) -> int:
    """Resume a paused plan and re-enqueue what is still queued. Returns batches enqueued."""
    with transaction.atomic():
        moved = DeliveryPlan.objects.filter(pk=plan_id, status=PlanStatus.PAUSED).update(
            status=PlanStatus.SENDING, pause_code="", pause_reason=""
        )
        if moved != 1:
            return 0
        plan = DeliveryPlan.objects.select_related("notice").get(pk=plan_id)
        Notice.objects.filter(pk=plan.notice_id, status=Status.PAUSED).update(
            status=Status.SENDING, status_reason="", updated_at=_now()
        )
        audit_record(
            actor=actor, action=Action.RESUMED, target=plan.notice, department=plan.department
        )
    queued = list(
        Batch.objects.filter(dispatch__plan_id=plan_id, status=BatchStatus.QUEUED).values_list(
            "pk", "urgent"
        )
    )
    _enqueue_batches(queued)
    if not plan.snapshot_done:
        from delivery.tasks import plan_notice_task

        plan_notice_task.apply_async(args=(plan.notice_id,), queue=_queue(plan.urgent))
    plan_finish_if_complete(plan_id)
    return len(queued)


def plan_finish_if_complete(plan_id: int) -> bool:
    """Sending is over when the snapshot is done and no batch of round 0 is still open."""
    open_batches = Batch.objects.filter(
        dispatch__plan_id=plan_id,
        dispatch__round=0,
        status__in=(BatchStatus.QUEUED, BatchStatus.CLAIMED, BatchStatus.UNKNOWN),
    )
    if open_batches.exists():
        return False
    with transaction.atomic():
        moved = DeliveryPlan.objects.filter(
            pk=plan_id, status=PlanStatus.SENDING, snapshot_done=True
        ).update(status=PlanStatus.DONE, finished_at=_now())
        if moved != 1:
            return False
        plan = DeliveryPlan.objects.select_related("notice").get(pk=plan_id)
        failed = Batch.objects.filter(dispatch__plan_id=plan_id, status=BatchStatus.FAILED).count()
        final = Status.SENT_WITH_FAILURES if failed else Status.SENT
        Notice.objects.filter(pk=plan.notice_id, status=Status.SENDING).update(
            status=final, updated_at=_now()
        )
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


# --- receipts --------------------------------------------------------------------------------


RECEIPT_LEASE_S = 300


def receipts_due(*, now: datetime | None = None, limit: int = 20_000) -> list[tuple[int, str]]:
    """Lease the due batches to one poll each: (batch id, lease) pairs for the poll tasks.

    Moving next_poll_at to the lease means the next beat does not enqueue the same batch again
    while its poll waits in the queue; a lost poll message comes due again when the lease ends.
    """
    moment = now or _now()
    ids = list(
        Batch.objects.filter(
            status=BatchStatus.ACCEPTED, receipts_done=False, next_poll_at__lte=moment
        )
        .order_by("next_poll_at")
        .values_list("pk", flat=True)[:limit]
    )
    lease = moment + timedelta(seconds=RECEIPT_LEASE_S)
    Batch.objects.filter(pk__in=ids, next_poll_at__lte=moment).update(next_poll_at=lease)
    return [(batch_id, lease.isoformat()) for batch_id in ids]


def _user_batch_ids(batch: Batch) -> list[str]:
    return [str(u) for u in batch.userids]


def batch_poll_receipts(
    batch_id: int, *, now: datetime | None = None, lease: str | None = None
) -> str:
    """Poll one accepted batch's result (or progress) and record each person's state.

    ``lease`` is what receipts_due leased the batch with; without one the batch must be due.
    """
    moment = now or _now()
    batch = Batch.objects.select_related("dispatch__plan__department").filter(pk=batch_id).first()
    if batch is None or batch.receipts_done or batch.status != BatchStatus.ACCEPTED:
        return "skipped"
    leased = lease is not None and batch.next_poll_at == datetime.fromisoformat(lease)
    if not leased and (batch.next_poll_at is None or batch.next_poll_at > moment):
        return "skipped"  # not due (or another poller holds it)
    lease_until = moment + timedelta(seconds=120)
    # Claim this poll: a second poller of the same batch matches nothing.
    claimed = Batch.objects.filter(
        pk=batch_id, next_poll_at=batch.next_poll_at, receipts_done=False
    ).update(next_poll_at=lease_until)
    if claimed != 1:
        return "skipped"
    plan = batch.dispatch.plan
    department = plan.department
    accepted_at = batch.accepted_at or moment
    if (moment - accepted_at).total_seconds() > planning.RECEIPT_WINDOW_S:
        Batch.objects.filter(pk=batch_id).update(receipts_done=True, next_poll_at=None)
        return "expired"
    app_key = department.dingtalk_app_key or f"department:{department.code}"
    api = "getsendresult" if batch.userids else "getsendprogress"
    try:
        decision = get_governor().acquire(
            app_key=app_key, api=api, edition=department.dingtalk_edition
        )
    except GovernorUnavailable:
        Batch.objects.filter(pk=batch_id).update(next_poll_at=moment + timedelta(seconds=60))
        return "governor_down"
    if not decision.allowed:
        Batch.objects.filter(pk=batch_id).update(
            next_poll_at=moment + timedelta(seconds=max(1.0, decision.wait_s))
        )
        return "throttled"
    assert batch.task_id is not None  # noqa: S101 - accepted batches always carry their task id
    try:
        client = _client(department)
        if not batch.userids:
            progress = client.get_send_progress(batch.task_id)
            if progress.done:
                Batch.objects.filter(pk=batch_id).update(
                    receipts_done=True, next_poll_at=None, polls_done=F("polls_done") + 1
                )
                return "done"
            Batch.objects.filter(pk=batch_id).update(
                next_poll_at=moment + timedelta(seconds=30), polls_done=F("polls_done") + 1
            )
            return "in_progress"
        result = client.get_send_result(batch.task_id)
    except ResultUnavailable:
        Batch.objects.filter(pk=batch_id).update(next_poll_at=moment + timedelta(seconds=30))
        return "in_progress"
    except (DingTalkError, ApplicationError) as exc:
        logger.warning("delivery: receipts of batch %s failed: %s", batch_id, exc)
        Batch.objects.filter(pk=batch_id).update(next_poll_at=moment + timedelta(seconds=60))
        return "error"
    requeue = _apply_result(batch, result, moment)
    polls = batch.polls_done + 1
    offset = planning.next_poll_offset(polls)
    all_settled = not result.unread and not requeue
    done = all_settled or offset is None or offset > planning.RECEIPT_WINDOW_S
    Batch.objects.filter(pk=batch_id).update(
        polls_done=polls,
        receipts_done=done,
        next_poll_at=None if done else accepted_at + timedelta(seconds=offset or 0),
    )
    if requeue:
        _enqueue_batches([(requeue, batch.urgent)])
    return "done" if done else "polled"


def _apply_result(batch: Batch, result: Any, moment: datetime) -> int | None:
    """Write one getsendresult into the deliveries; returns a re-queued batch id, if any."""
    plan_id = batch.dispatch.plan_id
    people = Delivery.objects.filter(plan_id=plan_id)
    codes = result.forbidden_codes()
    forbidden = set(result.forbidden_userids) | set(codes)
    requeue_ids = sorted(u for u in forbidden if codes.get(u) in FLOW_CONTROL_REQUEUE)
    already = sorted(
        u for u in forbidden if batch.after_unknown and codes.get(u) in DUPLICATE_CONTENT
    )
    dropped = sorted(u for u in forbidden if u not in requeue_ids and u not in already)
    new_batch_id: int | None = None
    with transaction.atomic():
        if result.read:
            people.filter(dingtalk_user_id__in=result.read, first_read_at__isnull=True).update(
                first_read_at=moment
            )
            people.filter(dingtalk_user_id__in=result.read).exclude(
                state=DeliveryState.READ
            ).update(state=DeliveryState.READ)
        if batch.dispatch.round == 0:
            if result.unread:
                people.filter(
                    dingtalk_user_id__in=result.unread,
                    state__in=(DeliveryState.ACCEPTED, DeliveryState.QUEUED),
                ).update(state=DeliveryState.UNREAD)
            if already:
                people.filter(dingtalk_user_id__in=already).exclude(
                    state=DeliveryState.READ
                ).update(state=DeliveryState.UNREAD)
            if result.failed:
                people.filter(dingtalk_user_id__in=result.failed).update(state=DeliveryState.FAILED)
            if result.invalid:
                people.filter(dingtalk_user_id__in=result.invalid).update(
                    state=DeliveryState.INVALID
                )
            for userid in dropped:
                people.filter(dingtalk_user_id=userid).update(
                    state=DeliveryState.FORBIDDEN, code=codes.get(userid)
                )
        if requeue_ids:
            dispatch = Dispatch.objects.select_for_update().get(pk=batch.dispatch_id)
            new = Batch.objects.create(
                dispatch=dispatch,
                seq=dispatch.next_seq,
                userids=requeue_ids,
                size=len(requeue_ids),
                urgent=batch.urgent,
            )
            Dispatch.objects.filter(pk=dispatch.pk).update(next_seq=F("next_seq") + 1)
            if batch.dispatch.round == 0:
                people.filter(dingtalk_user_id__in=requeue_ids).update(
                    state=DeliveryState.QUEUED, batch=new, code=None
                )
            new_batch_id = new.pk
    return new_batch_id


# --- sweeper ---------------------------------------------------------------------------------


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Re-drive everything a lost message, a dead worker or a broker outage left behind.

    - approved notices with no plan (the broker was down at approval) and due scheduled ones;
    - plans whose snapshot stopped half-way;
    - batches still queued a while after creation (their message was lost);
    - batches claimed long ago (the worker died during the call): outcome unknown;
    - unknown batches: resent with identical content for DingTalk to reconcile;
    - paused plans whose cause has cleared.
    """
    moment = now or _now()
    stale = moment - timedelta(seconds=float(settings.DELIVERY_CLAIM_STALE_S))
    lost = moment - timedelta(seconds=float(settings.DELIVERY_QUEUED_STALE_S))
    counts = {"planned": 0, "requeued": 0, "unknown": 0, "resent": 0, "resumed": 0, "finished": 0}
    from delivery.tasks import plan_notice_task

    due = Notice.objects.filter(
        Q(status=Status.APPROVED) | Q(status=Status.SCHEDULED, send_at__lte=moment),
        delivery_plan__isnull=True,
    ).filter(Q(send_at__isnull=True) | Q(send_at__lte=moment))
    for notice_id, tier, high_risk in due.values_list("pk", "tier", "high_risk")[:100]:
        plan_notice_task.apply_async(
            args=(notice_id,), queue=_queue(tier == Tier.CITYWIDE or high_risk)
        )
        counts["planned"] += 1
    for notice_id, urgent in DeliveryPlan.objects.filter(
        status=PlanStatus.SENDING, snapshot_done=False, created_at__lte=lost
    ).values_list("notice_id", "urgent")[:100]:
        plan_notice_task.apply_async(args=(notice_id,), queue=_queue(urgent))
        counts["planned"] += 1
    counts["unknown"] = Batch.objects.filter(
        status=BatchStatus.CLAIMED, claimed_at__lt=stale
    ).update(status=BatchStatus.UNKNOWN, error_code="stale_claim")
    for batch in Batch.objects.filter(status=BatchStatus.UNKNOWN).select_related("dispatch__plan")[
        :500
    ]:
        if batch.task_id is not None:
            # The call did return a task id after all: it went out.
            Batch.objects.filter(pk=batch.pk, status=BatchStatus.UNKNOWN).update(
                status=BatchStatus.CLAIMED
            )
            _record_accepted(batch, batch.task_id)
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
            _enqueue_batches([(batch.pk, batch.urgent)])
            counts["resent"] += 1
    # A deep queue is normal (the governor paces a large send); only a plan where nothing was
    # claimed lately has lost its messages, so only those are enqueued again.
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
    for plan_id in list(stalled):
        queued = Batch.objects.filter(
            dispatch__plan_id=plan_id, status=BatchStatus.QUEUED
        ).values_list("pk", "urgent")[:5000]
        for batch_id, urgent in queued:
            _enqueue_batches([(batch_id, urgent)])
            counts["requeued"] += 1
    for plan in DeliveryPlan.objects.filter(status=PlanStatus.PAUSED).select_related("department"):
        if _pause_cleared(plan):
            counts["resumed"] += int(plan_resume(actor=None, plan_id=plan.pk) >= 0)
    for plan_id in DeliveryPlan.objects.filter(
        status=PlanStatus.SENDING, snapshot_done=True
    ).values_list("pk", flat=True):
        counts["finished"] += int(plan_finish_if_complete(plan_id))
    return counts


def _pause_cleared(plan: DeliveryPlan) -> bool:
    """Whether the cause of a pause is gone (checked with exempt calls only)."""
    governor = get_governor()
    if plan.pause_code == "governor_down":
        return governor.healthy()
    if plan.pause_code in ("quota_exhausted", "QuotaExhausted"):
        from delivery.quota import monthly_calls_left

        try:
            return monthly_calls_left(plan.department) > 0
        except GovernorUnavailable:
            return False
    if plan.pause_code in ("InvalidCredentials", "channel_unconfigured", "secret_unavailable"):
        try:
            _client(plan.department).get_access_token(force_refresh=True)
        except (DingTalkError, ApplicationError):
            return False
        return True
    return False
