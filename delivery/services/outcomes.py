"""The outcomes of send calls: accepted (with DingTalk's task id), failed, unknown, released.

Every status moves by a conditional UPDATE, and work goes on only when exactly one row (or
exactly the claimed rows) changed, so an outcome recorded twice is recorded once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.services import audit_record
from delivery import planning
from delivery.audit_actions import DeliveryAuditAction as Action
from delivery.governor import time_scale
from delivery.models import Batch, BatchStatus, Delivery, DeliveryPlan, DeliveryState
from delivery.services.lifecycle import plan_finish_if_complete
from dingtalk.errors import DingTalkError


def release_batch(batch_id: int, *, error: str = "", code: str = "") -> None:
    Batch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
        status=BatchStatus.QUEUED, error=error[:300], error_code=code[:40], claim_token=""
    )


def record_accepted(batch: Batch, task_id: int) -> None:
    record_accepted_many([(batch, task_id)])


def record_accepted_many(accepted: list[tuple[Batch, int]]) -> None:
    """Write a group of accepted calls in one transaction: batches, their people, the trail.

    A batch the sweeper declared unknown meanwhile (its claim went stale) is not moved; it only
    keeps its task id, which the sweeper then uses to record it as sent instead of resending.
    """
    now = timezone.now()
    first_poll = now + timedelta(seconds=planning.RECEIPT_POLL_OFFSETS_S[0] / time_scale())
    task_ids = {batch.pk: task_id for batch, task_id in accepted}
    with transaction.atomic():
        mine = _accept_claimed(task_ids, now, first_poll)
        for pk in sorted(set(task_ids) - mine):
            Batch.objects.filter(pk=pk, task_id__isnull=True).update(task_id=task_ids[pk])
        # The people's rows are not touched: acceptance is the batch's (models.effective_state).
        moved = [(batch, task_id) for batch, task_id in accepted if batch.pk in mine]
        by_plan: dict[int, list[tuple[Batch, int]]] = defaultdict(list)
        for batch, task_id in moved:
            by_plan[batch.dispatch.plan_id].append((batch, task_id))
        _poll_fast_plans_sooner(moved, now)
        for group in by_plan.values():
            plan = group[0][0].dispatch.plan
            # Every batch outcome is on the trail, with DingTalk's task id for reconciliation;
            # one event per plan and flush lists the batches it covers.
            audit_record(
                actor=None,
                action=Action.BATCH_ACCEPTED,
                target=plan.notice,
                department=plan.department,
                data={
                    "size": sum(batch.size for batch, _ in group),
                    "batches": [
                        {
                            "batch": batch.pk,
                            "size": batch.size,
                            "task_id": task_id,
                            "round": batch.dispatch.round,
                        }
                        for batch, task_id in group
                    ],
                },
            )
    # After the commit, in its own statement: the plan row is never locked while batch rows
    # are (the planner locks them in the other order).
    for plan_id, group in by_plan.items():
        if group[0][0].dispatch.plan.first_accepted_at is None:
            DeliveryPlan.objects.filter(pk=plan_id, first_accepted_at__isnull=True).update(
                first_accepted_at=now
            )


def _poll_fast_plans_sooner(moved: list[tuple[Batch, int]], now: datetime) -> None:
    """A small closed-loop plan's batches are first polled at +30 s (planning.poll_offsets)."""
    fast = [batch.pk for batch, _ in moved if batch.dispatch.plan.fast_receipts]
    if fast:
        first = planning.FAST_RECEIPT_POLL_OFFSETS_S[0] / time_scale()
        Batch.objects.filter(pk__in=fast, polls_done=0).update(
            next_poll_at=now + timedelta(seconds=first)
        )


def _accept_claimed(task_ids: dict[int, int], now: datetime, first_poll: datetime) -> set[int]:
    """Move the still-claimed batches among these to accepted with their task ids.

    Returns the ids it moved. The row locks are taken in id order (no deadlock between two
    flushes), as NO KEY UPDATE (no wait for the planner's key-share checks on new rows). On
    PostgreSQL it is one UPDATE ... FROM unnest(...) RETURNING: building the CASE expression
    through the ORM cost more than the statement itself, once per flush.
    """
    ids = sorted(task_ids)
    if connection.vendor == "postgresql":
        table = Batch._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH locked AS (SELECT id FROM {table} WHERE id = ANY(%s) AND status = %s "  # noqa: S608 - table name from model metadata
                "ORDER BY id FOR NO KEY UPDATE) "
                f"UPDATE {table} AS b SET status = %s, task_id = v.task_id, accepted_at = %s, "
                "next_poll_at = %s, error = '', error_code = '', claim_token = '' "
                "FROM locked, unnest(%s::bigint[], %s::bigint[]) AS v(id, task_id) "
                "WHERE b.id = locked.id AND b.id = v.id AND b.status = %s RETURNING b.id",
                [
                    ids,
                    BatchStatus.CLAIMED,
                    BatchStatus.ACCEPTED,
                    now,
                    first_poll,
                    ids,
                    [task_ids[pk] for pk in ids],
                    BatchStatus.CLAIMED,
                ],
            )
            return {row[0] for row in cursor.fetchall()}
    mine = set(
        Batch.objects.select_for_update(no_key=True)
        .filter(pk__in=ids, status=BatchStatus.CLAIMED)
        .values_list("pk", flat=True)
    )
    if mine:
        Batch.objects.filter(pk__in=mine, status=BatchStatus.CLAIMED).update(
            status=BatchStatus.ACCEPTED,
            task_id=Case(
                *(When(pk=pk, then=Value(task_ids[pk])) for pk in sorted(mine)),
                output_field=BigIntegerField(),
            ),
            accepted_at=now,
            next_poll_at=first_poll,
            error="",
            error_code="",
            claim_token="",
        )
    return mine


def mark_unknown(batch_id: int, error: str) -> None:
    """The call may have reached DingTalk without an answer (services.uncertain decides)."""
    Batch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
        status=BatchStatus.UNKNOWN,
        error=error[:300],
        error_code="ambiguous",
        uncertain_since=Coalesce(F("uncertain_since"), F("claimed_at")),
    )


def fail_batch(batch_id: int, exc: DingTalkError) -> None:
    with transaction.atomic():
        moved = Batch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
            status=BatchStatus.FAILED, error=str(exc)[:300], error_code=str(exc.errcode or "")
        )
        if moved != 1:
            return
        batch = Batch.objects.select_related("dispatch__plan__notice").get(pk=batch_id)
        if batch.dispatch.round == 0:
            # Found through delivery_unique_person_per_plan (the batch column has no index).
            Delivery.objects.filter(
                plan_id=batch.dispatch.plan_id,
                dingtalk_user_id__in=[str(u) for u in batch.userids],
                batch_id=batch_id,
                state=DeliveryState.QUEUED,
            ).update(state=DeliveryState.FAILED, code=exc.errcode)
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
