"""The planner: a notice's strategy, its first (organisation- or department-wide) batches, and
the snapshot's chunk loop, queuing each chunk's batches as soon as they are committed.

Entry: plan_notice(notice_id), run by the delivery.plan_notice task that notices queue on
the final approval's commit (delivery.enqueue.plan_notice). Safe to run twice: plan_start
creates the plan once, and the snapshot's cursor moves by a conditional update.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.services import audit_record
from common.errors import ApplicationError
from delivery import channels, deptwide, enqueue, media, messages, planning, reach
from delivery.audit_actions import DeliveryAuditAction as Action
from delivery.models import Batch, BatchStatus, Delivery, DeliveryPlan, Dispatch, PlanStatus
from delivery.services.lifecycle import APPROVAL_VOIDED, plan_finish_if_complete, plan_pause
from delivery.services.outbox import (
    SnapshotRaced,
    companion_dispatch_for,
    dispatch_for,
    mirror_batch,
    write_chunk,
)
from delivery.services.outbox_pg import pg_snapshot_chunk, pg_snapshot_fits
from notices.delivery_status import notice_mark_sending
from notices.models import Notice, Status
from notices.preflight import audience_count
from notices.reapproval import notice_check_before_send


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
    # Followers go by the Service Window, members by work notifications (delivery.channels).
    channels.start_service_window(plan, notice)
    # Organisation- and department-wide calls go out before the snapshot is written.
    first = [*plan_broadcast_batch(plan, notice), *plan_dept_batches(plan, notice)]
    queued = [(batch.pk, plan.urgent) for batch in first if batch.status == BatchStatus.QUEUED]
    enqueue.send_batch_groups(queued)
    enqueued = len(queued)
    finished = plan.snapshot_done
    while not finished:
        try:
            batch_ids, finished = plan_snapshot_chunk(plan.pk)
        except SnapshotRaced:
            # Another planner holds this chunk (a redelivered message): let it finish.
            break
        enqueue.send_batch_groups((batch_id, plan.urgent) for batch_id in batch_ids)
        enqueued += len(batch_ids)
    if finished:
        refresh_statistics(plan.pk)
        plan_finish_if_complete(plan.pk)
    return enqueued


def plan_start(notice_id: int) -> DeliveryPlan | None:
    """Move an approved (or due scheduled) notice to sending and create its plan, once."""
    with transaction.atomic():
        notice = Notice.objects.select_related("department").filter(pk=notice_id).first()
        if notice is None:
            return None
        plan = DeliveryPlan.objects.filter(notice_id=notice_id).first()
        if plan is not None:
            return _restart_reapproved(plan, notice)
        if notice.status not in (Status.APPROVED, Status.SCHEDULED) or not is_due(notice):
            return None
        # The approved hash, the approvals the risk and reach need now, and the reach's growth:
        # on any difference nothing is planned and the notice is back in the approval queue.
        if not notice_check_before_send(notice_id).ok:
            return None
        if not notice_mark_sending(notice_id):
            return None
        reached = plan_start_reach(notice)
        strategy = reached.strategy
        plan = DeliveryPlan.objects.create(
            notice=notice,
            department=notice.department,
            strategy=strategy,
            status=PlanStatus.SENDING,
            urgent=notice.is_urgent,
            approved_at=notice.approved_at,
            reach=reached.count,
            reach_scope=reached.scope,
            reach_counted_at=reached.counted_at,
            fast_receipts=reach.fast_receipts_allowed(
                notice.department,
                tier=notice.tier,
                strategy=strategy,
                recipients=reached.portal_recipients,
                companion=messages.has_companion(notice),
                reminders=notice.max_reminders or 0,
            ),
            next_reminder_at=(
                timezone.now() + timedelta(minutes=notice.remind_after_minutes)
                if notice.max_reminders and notice.remind_after_minutes
                else None
            ),
        )
        audit_record(
            actor=None,
            action=Action.DISPATCH_STARTED,
            target=notice,
            department=notice.department,
            data={"strategy": strategy, "version_hash": notice.version_hash, **reached.as_dict()},
        )
    return plan


def plan_start_reach(notice: Notice) -> reach.Reach:
    """The strategy and what it reaches, counted as the pre-flight and the approvers saw it."""
    portal = audience_count(notice.department, notice.tier, notice.segments.all()).count
    return reach.notice_reach(notice, portal_recipients=portal)


def _restart_reapproved(plan: DeliveryPlan, notice: Notice) -> DeliveryPlan:
    """A plan paused because its notice went back for approval on resume (lifecycle.plan_resume)
    sends again once the notice is approved again and the send-time check passes; the batches
    still queued are queued again on commit. Any other plan is returned as it is.
    Audit: delivery.resumed."""
    if plan.status != PlanStatus.PAUSED or plan.pause_code != APPROVAL_VOIDED:
        return plan
    if notice.status not in (Status.APPROVED, Status.SCHEDULED) or not is_due(notice):
        return plan
    if not notice_check_before_send(notice.pk).ok or not notice_mark_sending(notice.pk):
        return plan
    DeliveryPlan.objects.filter(pk=plan.pk, status=PlanStatus.PAUSED).update(
        status=PlanStatus.SENDING, pause_code="", pause_reason=""
    )
    plan.status, plan.pause_code, plan.pause_reason = PlanStatus.SENDING, "", ""
    audit_record(
        actor=None,
        action=Action.RESUMED,
        target=notice,
        department=notice.department,
        data={"after": "re-approval", "version_hash": notice.version_hash},
    )
    queued = list(
        Batch.objects.filter(dispatch__plan=plan, status=BatchStatus.QUEUED).values_list(
            "pk", "urgent"
        )
    )
    transaction.on_commit(lambda: enqueue.send_batch_groups(queued))
    return plan


def choose_plan_strategy(notice: Notice) -> str:
    """The notice's send strategy on what the database says now (delivery.reach)."""
    return reach.notice_strategy(notice)


def is_due(notice: Notice) -> bool:
    return notice.send_at is None or notice.send_at <= timezone.now()


def plan_broadcast_batch(plan: DeliveryPlan, notice: Notice) -> list[Batch]:
    """The organisation-wide batch and its companion card's (file and voice notices).

    Created before the snapshot so they go out first; empty for every other strategy.
    """
    if plan.strategy != planning.Strategy.ORG_WIDE:
        return []
    batches: list[Batch] = []
    dispatches = [dispatch_for(plan, notice, "both"), companion_dispatch_for(plan, notice, "both")]
    for dispatch in dispatches:
        if dispatch is None:
            continue
        batch, _ = Batch.objects.get_or_create(
            dispatch=dispatch,
            seq=0,
            defaults={"to_all": True, "size": 0, "urgent": plan.urgent},
        )
        Dispatch.objects.filter(pk=dispatch.pk, next_seq=0).update(next_seq=1)
        batches.append(batch)
    return batches


def plan_dept_batches(plan: DeliveryPlan, notice: Notice) -> list[Batch]:
    """The department-wide batches (and their companions), created before the snapshot.

    Like the organisation-wide batch, they go out while the snapshot is still being written.
    The layout is worked out again from the directory as it is now (deptwide.dept_wide_plan):
    if the audience no longer maps onto departments (the directory or a subscription changed
    since plan_start chose the strategy), the plan falls back to user batches, which is safe
    because nothing has been created for it yet. The plan row is locked while deciding, so the
    fallback and the creation never both happen; the batches themselves are claimed by moving
    the dispatch's next_seq from 0, so a second planner creates nothing.
    Returns the plan's department-wide batches; empty for every other strategy.
    Audit: delivery.strategy_changed on a fallback.
    """
    if plan.strategy != planning.Strategy.DEPT_WIDE:
        return []
    made = Dispatch.objects.filter(plan=plan, language="both", round=0, next_seq__gt=0).exists()
    if not made:
        layout = deptwide.dept_wide_plan(notice)  # reads only, before any lock
        with transaction.atomic():
            current = DeliveryPlan.objects.select_for_update().get(pk=plan.pk)
            plan.strategy = current.strategy
            if current.strategy != planning.Strategy.DEPT_WIDE:
                return []
            if layout is None:
                _plan_fall_back(current, notice)
                plan.strategy = current.strategy
                return []
            _create_dept_batches(plan, notice, layout)
    return [
        batch
        for batch in Batch.objects.filter(
            dispatch__plan=plan,
            dispatch__round=0,
            dispatch__language__in=("both", messages.companion_language("both")),
        ).order_by("seq", "dispatch_id")
        if batch.dept_ids
    ]


def _create_dept_batches(plan: DeliveryPlan, notice: Notice, layout: deptwide.DeptWidePlan) -> None:
    """One batch per call of the layout (and its companion's), unless a planner made them."""
    dispatch = dispatch_for(plan, notice, "both")
    claimed = Dispatch.objects.filter(pk=dispatch.pk, next_seq=0).update(
        next_seq=len(layout.groups)
    )
    if claimed != 1:
        return
    created = [
        Batch(
            dispatch=dispatch,
            seq=seq,
            dept_ids=list(group.dept_ids),
            size=group.size,
            urgent=plan.urgent,
        )
        for seq, group in enumerate(layout.groups)
    ]
    companion = companion_dispatch_for(plan, notice, "both")
    if companion is not None:
        Dispatch.objects.filter(pk=companion.pk).update(next_seq=len(created))
        created += [mirror_batch(batch, companion, batch.seq) for batch in list(created)]
    Batch.objects.bulk_create(created)


def _plan_fall_back(plan: DeliveryPlan, notice: Notice) -> None:
    """Department-wide no longer fits the audience: send in user batches (inside a lock)."""
    moved = DeliveryPlan.objects.filter(pk=plan.pk, strategy=planning.Strategy.DEPT_WIDE).update(
        strategy=planning.Strategy.USER_BATCHES
    )
    if moved != 1:
        return
    plan.strategy = planning.Strategy.USER_BATCHES
    audit_record(
        actor=None,
        action=Action.STRATEGY_CHANGED,
        target=notice,
        department=plan.department,
        data={
            "from": planning.Strategy.DEPT_WIDE,
            "to": planning.Strategy.USER_BATCHES,
            "reason": "the audience no longer maps exactly onto DingTalk departments",
        },
    )


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
        if connection.vendor == "postgresql" and pg_snapshot_fits(plan, notice):
            return pg_snapshot_chunk(plan, notice, size)
        return write_chunk(plan, notice, size)


def refresh_statistics(plan_id: int) -> bool:
    """After a large snapshot, refresh PostgreSQL's statistics of the people and batch tables.

    A million rows written in a minute leave the query planner with figures from before them
    until autovacuum's next analyze (or never, where autovacuum is off). With stale figures
    the receipt polls' update by (plan, DingTalk user id) was planned as a scan of the whole
    plan: ten times slower, about 0.4 s instead of 0.04 s per group of 5,000 people. ANALYZE
    samples a fixed number of rows, so it costs a fraction of a second whatever the size.
    Returns whether it ran.
    """
    if connection.vendor != "postgresql":
        return False
    planned = DeliveryPlan.objects.filter(pk=plan_id).values_list("planned", flat=True).first()
    if (planned or 0) < int(settings.DELIVERY_ANALYZE_AFTER):
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Delivery._meta.db_table}, {Batch._meta.db_table}")
    return True
