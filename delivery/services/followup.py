"""Follow-up after sending: reminders, confirmations, recall, and the outreach list.

- Reminders go to unread or unconfirmed people per the notice's policy, each round worded
  differently (DingTalk drops identical content to a person within a day).
- A confirmation arrives through a per-person signed link (django.core.signing) on a public
  page; for drills it may carry the browser's location.
- Recall within 24 hours of the first accepted call, by a supervisor (RECALL_NOTICE).
- After the last reminder, those still silent go on an outreach list staff export, assign
  and close with an outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import permissions as perms
from accounts.channel import client_for_department
from audit.services import audit_record
from audit.spreadsheets import neutralise_cell
from common.errors import ApplicationError
from common.types import Actor
from delivery import enqueue, messages, planning
from delivery.audit_actions import DeliveryAuditAction as Action
from delivery.governor import (
    GovernorUnavailable,
    content_fingerprint,
    department_app_key,
    get_governor,
)
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    Dispatch,
    OutreachStatus,
    PlanStatus,
)
from delivery.privacy import ERASED_PREFIX
from delivery.services import service_window
from dingtalk.errors import DingTalkError
from notices.delivery_status import notice_mark_recalled
from notices.models import Notice, RemindWhom, Status

RECALL_WINDOW = timedelta(hours=24)


# --- reminders -------------------------------------------------------------------------------


def _silent(plan: DeliveryPlan, notice: Notice) -> QuerySet[Delivery]:
    # Erased people get no reminder and no outreach call.
    people = Delivery.objects.filter(plan=plan, outreach=OutreachStatus.NONE).exclude(
        dingtalk_user_id__startswith=ERASED_PREFIX
    )
    if notice.remind_whom == RemindWhom.UNCONFIRMED or notice.requires_confirmation:
        return people.filter(
            _reached(plan, (DeliveryState.UNREAD, DeliveryState.READ)),
            confirmed_at__isnull=True,
        )
    return people.filter(_reached(plan, (DeliveryState.UNREAD,)))


def _reached(plan: DeliveryPlan, states: tuple[str, ...]) -> Q:
    """People whose effective state is accepted or one of ``states`` (models.effective_state_in)
    on their own row's columns, the accepted batches in a subquery: with no join, an UPDATE
    filtered by it checks a row's state again when a receipt poll changed it meanwhile (a
    person who has just read is not put on the outreach list)."""
    accepted = Batch.objects.filter(
        dispatch_id__in=Dispatch.objects.filter(plan=plan).values("pk"),
        status=BatchStatus.ACCEPTED,
    ).values("pk")
    return Q(state__in=(DeliveryState.ACCEPTED, *states)) | Q(
        state=DeliveryState.QUEUED, batch_id__in=accepted
    )


def plan_send_reminder(plan_id: int, *, now: datetime | None = None) -> int:
    """Send the next reminder round of one plan if due; after the last, open the outreach list.

    The round number is claimed with a conditional update, so a second run does nothing.
    Returns the number of reminder batches enqueued.
    """
    moment = now or timezone.now()
    plan = DeliveryPlan.objects.select_related("notice", "department").get(pk=plan_id)
    notice = plan.notice
    if (
        plan.status != PlanStatus.DONE
        or plan.next_reminder_at is None
        or plan.next_reminder_at > moment
    ):
        return 0
    round_ = plan.reminders_sent + 1
    last = round_ >= notice.max_reminders
    interval = timedelta(minutes=notice.remind_after_minutes or 60)
    with transaction.atomic():
        moved = DeliveryPlan.objects.filter(
            pk=plan.pk, reminders_sent=plan.reminders_sent, next_reminder_at=plan.next_reminder_at
        ).update(
            reminders_sent=round_,
            next_reminder_at=None if round_ > notice.max_reminders else moment + interval,
        )
        if moved != 1:
            return 0
        if round_ > notice.max_reminders:
            # The reminders are spent: whoever is still silent goes to staff.
            listed = _silent(plan, notice).update(outreach=OutreachStatus.OPEN)
            audit_record(
                actor=None,
                action=Action.OUTREACH_LISTED,
                target=notice,
                department=plan.department,
                data={"people": listed},
            )
            return 0
        people = list(_silent(plan, notice).values_list("dingtalk_user_id", "dispatch__language"))
        _create_reminder_batches(plan, notice, round_, people)
        Delivery.objects.filter(plan=plan, dingtalk_user_id__in=[u for u, _ in people]).update(
            reminders_sent=F("reminders_sent") + 1
        )
        audit_record(
            actor=None,
            action=Action.REMINDED,
            target=notice,
            department=plan.department,
            data={"round": round_, "people": len(people), "last": last},
        )
    ids = list(
        Batch.objects.filter(dispatch__plan=plan, dispatch__round=round_).values_list(
            "pk", "urgent"
        )
    )
    enqueue.send_batch_groups(ids)
    return len(ids)


def _create_reminder_batches(
    plan: DeliveryPlan, notice: Notice, round_: int, people: list[tuple[str, str]]
) -> None:
    """The round's batches: each person in the language their notice went out in, worded for
    this round (messages.build_message), in calls of up to 100 (one for per-person links)."""
    by_language: dict[str, list[str]] = {}
    for userid, language in people:
        by_language.setdefault(language, []).append(userid)
    per_call = 1 if plan.strategy == planning.Strategy.PER_PERSON else 100
    created: list[Batch] = []
    for language, userids in sorted(by_language.items()):
        message = messages.build_message(notice, language, round_)
        dispatch, _ = Dispatch.objects.get_or_create(
            plan=plan,
            language=language,
            round=round_,
            defaults={"message": message, "content_hash": content_fingerprint(message)},
        )
        for seq, group in enumerate(planning.split_batches(userids, per_call)):
            created.append(
                Batch(
                    dispatch=dispatch, seq=seq, userids=group, size=len(group), urgent=plan.urgent
                )
            )
    Batch.objects.bulk_create(created)


def reminders_due_send(*, now: datetime | None = None) -> int:
    moment = now or timezone.now()
    total = 0
    for plan_id in DeliveryPlan.objects.filter(
        status=PlanStatus.DONE, next_reminder_at__lte=moment
    ).values_list("pk", flat=True)[:200]:
        total += plan_send_reminder(plan_id, now=moment)
    return total


# --- confirmation ----------------------------------------------------------------------------


def delivery_for_token(token: str) -> Delivery | None:
    delivery_id = messages.delivery_from_token(token)
    if delivery_id is None:
        return None
    # An erased person's link stops working: a late click must not record them again.
    return (
        Delivery.objects.select_related("plan__notice")
        .filter(pk=delivery_id)
        .exclude(dingtalk_user_id__startswith=ERASED_PREFIX)
        .first()
    )


WITHDRAWN_PLAN_STATUSES = frozenset(
    {PlanStatus.RECALLING, PlanStatus.RECALLED, PlanStatus.CANCELLED}
)
WITHDRAWN_NOTICE_STATUSES = frozenset({Status.RECALLED, Status.CANCELLED})


def delivery_withdrawn(delivery: Delivery) -> bool:
    """True once the notice is recalled (or being recalled) or cancelled: its link shows nothing."""
    return (
        delivery.plan.status in WITHDRAWN_PLAN_STATUSES
        or delivery.plan.notice.status in WITHDRAWN_NOTICE_STATUSES
    )


def delivery_confirm(
    *, token: str, latitude: float | None = None, longitude: float | None = None
) -> Delivery:
    """Record a person's confirmation (once; a second click changes nothing)."""
    delivery = delivery_for_token(token)
    if delivery is None:
        raise ApplicationError("This confirmation link is not valid.", code="bad_token")
    if delivery_withdrawn(delivery):
        raise ApplicationError(_("This notice was withdrawn."), code="recalled")
    located = (
        latitude is not None
        and longitude is not None
        and -90 <= latitude <= 90
        and -180 <= longitude <= 180
    )
    with transaction.atomic():
        now = timezone.now()
        # Clicked before the sender wrote the batch's acceptance: the call reached the person
        # by now. Their own time keeps the rollups' latency (0 either way) from depending on
        # the batch's, which the acceptance writes later.
        reached = (
            {"accepted_at": Coalesce(F("accepted_at"), Value(now))}
            if _lock_unaccepted_batch(delivery.pk)
            else {}
        )
        # Re-checked in the update: an erasure or a recall committed since the read (a recall
        # of a batch not yet accepted is waited for above) leaves nothing to record.
        sending = DeliveryPlan.objects.filter(pk=delivery.plan_id).exclude(
            status__in=WITHDRAWN_PLAN_STATUSES
        )
        moved = (
            Delivery.objects.filter(
                pk=delivery.pk, confirmed_at__isnull=True, plan_id__in=sending.values("pk")
            )
            .exclude(dingtalk_user_id__startswith=ERASED_PREFIX)
            .update(
                confirmed_at=now,
                # A read a receipt poll recorded since the page was read is kept.
                first_read_at=Coalesce(F("first_read_at"), Value(now)),
                state=DeliveryState.READ,
                latitude=latitude if located else None,
                longitude=longitude if located else None,
                **reached,
            )
        )
        if moved == 1:
            audit_record(
                actor=None,
                # The recipient's number, not their user id: the trail cannot be rewritten, so it
                # holds nothing that still names the person once their data is erased.
                actor_label=(
                    f"recipient #{delivery.recipient_id}" if delivery.recipient_id else "recipient"
                ),
                action=Action.CONFIRMED,
                target=delivery.plan.notice,
                department=delivery.plan.department,
                data={"delivery": delivery.pk, "located": located},
            )
        elif not sending.exists():
            raise ApplicationError(_("This notice was withdrawn."), code="recalled")
    delivery.refresh_from_db()
    return delivery


def _lock_unaccepted_batch(delivery_id: int) -> bool:
    """Lock the person's batch unless it is accepted; True if it is locked (not accepted).

    A queued person counts as accepted once their batch is (models.effective_state), and the
    rollups' triggers count each side from the other's row: the confirmation from the batch's
    status, the acceptance from how many of the batch's people are still queued. Locking the
    batch first (as acceptance, failure and recall lock it) puts one of the two after the
    other's commit, so neither counts the person from the state the other is changing. An
    accepted batch stays accepted: it needs no lock.
    """
    batch_id = Delivery.objects.filter(pk=delivery_id).values_list("batch_id", flat=True).first()
    if batch_id is None:
        return False
    locked = (
        Batch.objects.select_for_update(no_key=True)
        .filter(pk=batch_id)
        .exclude(status=BatchStatus.ACCEPTED)
        .values_list("pk", flat=True)
    )
    return bool(list(locked))


# --- recall ----------------------------------------------------------------------------------


def notice_recall(*, actor: Actor, notice: Notice, reason: str = "") -> DeliveryPlan:
    """Withdraw a sent notice within 24 hours (supervisor). The calls run in a task."""
    perms.require_department_perm(actor, perms.RECALL_NOTICE, notice.department)
    plan = DeliveryPlan.objects.filter(notice=notice).first()
    if plan is None or plan.first_accepted_at is None:
        raise ApplicationError("Only a notice that was sent can be recalled.", code="not_sent")
    if timezone.now() - plan.first_accepted_at > RECALL_WINDOW:
        with transaction.atomic():
            audit_record(
                actor=actor,
                action=Action.RECALL_REFUSED,
                target=notice,
                department=notice.department,
                data={"reason": "older than 24 hours"},
            )
        raise ApplicationError(
            "DingTalk can only recall notices sent in the last 24 hours.", code="too_late"
        )
    with transaction.atomic():
        moved = DeliveryPlan.objects.filter(
            pk=plan.pk, status__in=(PlanStatus.SENDING, PlanStatus.PAUSED, PlanStatus.DONE)
        ).update(status=PlanStatus.RECALLING, recalled_at=timezone.now(), next_reminder_at=None)
        if moved != 1:
            raise ApplicationError("This notice is already recalled.", code="recalled")
        _cancel_unsent(plan)
        service_window.cancel_queued(plan)
        notice_mark_recalled(notice.pk, reason=reason)
        audit_record(
            actor=actor,
            action=Action.RECALLED,
            target=notice,
            department=notice.department,
            data={"reason": reason[:500], "version_hash": notice.version_hash},
        )
        transaction.on_commit(lambda: enqueue.recall_notice(plan.pk))
    plan.refresh_from_db()
    return plan


def _cancel_unsent(plan: DeliveryPlan) -> None:
    """Cancel the plan's queued batches and the people no accepted call carries.

    Every batch of the plan not accepted is locked first, in id order (as claims and
    acceptances lock them), so none becomes accepted until the recall commits: an acceptance
    written but not committed is waited for, and its people then stay accepted; one that comes
    after finds its people cancelled and moves nobody. Without the lock both counted the same
    people, the recall as cancelled and the acceptance as accepted. The statements then name
    the old state in their own WHERE (no join), so a row another writer changed meanwhile is
    checked again, not overwritten (a batch just claimed is not cancelled under its call).
    """
    dispatches = Dispatch.objects.filter(plan=plan).values("pk")
    batches = Batch.objects.filter(dispatch_id__in=dispatches)
    list(
        batches.select_for_update(no_key=True)
        .exclude(status=BatchStatus.ACCEPTED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    batches.filter(status=BatchStatus.QUEUED).update(status=BatchStatus.CANCELLED)
    accepted = batches.filter(status=BatchStatus.ACCEPTED).values("pk")
    Delivery.objects.filter(plan=plan, state=DeliveryState.QUEUED).exclude(
        batch_id__in=accepted
    ).update(state=DeliveryState.CANCELLED)


def plan_recall_calls(plan_id: int) -> int:
    """Call DingTalk's recall for every accepted batch not yet recalled. Idempotent."""
    plan = DeliveryPlan.objects.select_related("department").get(pk=plan_id)
    if plan.status != PlanStatus.RECALLING:
        return 0
    department = plan.department
    app_key = department_app_key(department)
    done = 0
    pending = Batch.objects.filter(
        dispatch__plan=plan, status=BatchStatus.ACCEPTED, recalled_at__isnull=True
    ).exclude(task_id__isnull=True)
    for batch_id, task_id in pending.values_list("pk", "task_id"):
        if task_id is None:
            continue
        try:
            decision = get_governor().acquire(
                app_key=app_key, api="recall", edition=department.dingtalk_edition
            )
        except GovernorUnavailable:
            return done
        if not decision.allowed:
            return done  # the sweeper's next run continues
        try:
            client_for_department(department).recall(task_id)
        except DingTalkError:
            continue
        Batch.objects.filter(pk=batch_id, recalled_at__isnull=True).update(
            recalled_at=timezone.now(), receipts_done=True
        )
        done += 1
    sw_done, sw_left = service_window.sw_recall(plan)
    done += sw_done
    if not pending.exists() and not sw_left:
        DeliveryPlan.objects.filter(pk=plan.pk, status=PlanStatus.RECALLING).update(
            status=PlanStatus.RECALLED
        )
    return done


# --- outreach --------------------------------------------------------------------------------


def outreach_list(*, plan: DeliveryPlan) -> QuerySet[Delivery]:
    return (
        Delivery.objects.filter(plan=plan)
        .exclude(outreach=OutreachStatus.NONE)
        .select_related("recipient", "outreach_assignee")
        .order_by("outreach", "dingtalk_user_id")
    )


def outreach_assign(*, actor: Actor, delivery: Delivery, assignee: Any) -> None:
    perms.require_department_perm(actor, perms.VIEW_NOTICES, delivery.plan.department)
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk, outreach=OutreachStatus.OPEN).update(
            outreach_assignee=assignee
        )
        audit_record(
            actor=actor,
            action=Action.OUTREACH_ASSIGNED,
            target=delivery.plan.notice,
            department=delivery.plan.department,
            data={"delivery": delivery.pk, "assignee": getattr(assignee, "pk", None)},
        )


def outreach_close(*, actor: Actor, delivery: Delivery, outcome: str) -> None:
    perms.require_department_perm(actor, perms.VIEW_NOTICES, delivery.plan.department)
    if not outcome.strip():
        raise ApplicationError("Say how the case ended.", field="outcome")
    with transaction.atomic():
        moved = Delivery.objects.filter(pk=delivery.pk, outreach=OutreachStatus.OPEN).update(
            outreach=OutreachStatus.CLOSED,
            outreach_outcome=outcome.strip()[:300],
            outreach_closed_at=timezone.now(),
        )
        if moved == 1:
            audit_record(
                actor=actor,
                action=Action.OUTREACH_CLOSED,
                target=delivery.plan.notice,
                department=delivery.plan.department,
                # Not the text: staff write about the person, and the trail cannot forget it
                # when the person's data is erased (the delivery row keeps it until then).
                data={"delivery": delivery.pk, "outcome_chars": len(outcome.strip()[:300])},
            )


def outreach_rows(*, actor: Actor, plan: DeliveryPlan) -> list[list[Any]]:
    """The outreach list as spreadsheet rows, formula-neutralised; the export is audited."""
    perms.require_department_perm(actor, perms.VIEW_NOTICES, plan.department)
    rows: list[list[Any]] = [["DingTalk id", "Name", "Reminders", "Status", "Assignee", "Outcome"]]
    people = outreach_list(plan=plan)
    for d in people:
        rows.append(
            [
                neutralise_cell(v)
                for v in (
                    d.dingtalk_user_id,
                    d.recipient.name if d.recipient else "",
                    d.reminders_sent,
                    d.outreach,
                    d.outreach_assignee.get_username() if d.outreach_assignee else "",
                    d.outreach_outcome,
                )
            ]
        )
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=Action.OUTREACH_EXPORTED,
            target=plan.notice,
            department=plan.department,
            data={"rows": len(rows) - 1},
        )
    return rows
