"""Erasure on the delivery side: a person's deliveries become anonymous counts.

Called by audiences.services.recipient_erase inside its transaction (PDPO erasure request).
Each of the person's delivery rows keeps what the dashboard counts (state, times, district,
outreach status) and loses everything that points at the person: the recipient link, the DingTalk
user id (replaced by a random token per row, so two notices' rows cannot be linked to each other
and (plan, dingtalk_user_id) stays unique), the confirmation's location and the outreach outcome
staff wrote. The user id is also replaced in the batches that listed it; a batch not yet sent
leaves the person out instead, so nothing goes to them after the erasure.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q

from audiences.models import Recipient
from delivery.models import Batch, BatchStatus, Delivery, DeliveryPlan, DeliveryState

# No imported or synced user id can start like this: the import only takes ids that start with a
# letter or digit and have no colon (audiences.validation).
ERASED_PREFIX = "erased:"


def erased_token() -> str:
    return f"{ERASED_PREFIX}{uuid.uuid4().hex}"


def is_erased_userid(userid: str) -> bool:
    return userid.startswith(ERASED_PREFIX)


@dataclass(frozen=True)
class DeliveryErasure:
    deliveries: int  # delivery rows anonymised
    batches: int  # batches whose user id list was rewritten
    not_sent: int  # deliveries still queued, now cancelled (the person gets nothing)


def anonymise_recipient_deliveries(
    *, recipient_id: int, department_id: int, dingtalk_user_id: str
) -> DeliveryErasure:
    """Anonymise every delivery of one recipient (by link, or by user id in the department).

    Must run inside the caller's transaction, after the recipient row is locked (a snapshot
    writing a delivery for them waits on that lock). Writes no audit event: the caller's erasure
    event records the counts. Idempotent: a second call finds nothing.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("anonymise_recipient_deliveries must run inside the erasure transaction")
    # By link, and by user id for rows whose link is gone (plans of the same department only:
    # another department may have a different person under the same id). Two queries, so each
    # uses its index (recipient_id; plan and user id).
    columns = ("pk", "plan_id", "dingtalk_user_id")
    found = set(Delivery.objects.filter(recipient_id=recipient_id).values_list(*columns))
    if dingtalk_user_id and not is_erased_userid(dingtalk_user_id):
        found.update(
            Delivery.objects.filter(
                plan__in=DeliveryPlan.objects.filter(department_id=department_id),
                dingtalk_user_id=dingtalk_user_id,
            ).values_list(*columns)
        )
    if not found:
        return DeliveryErasure(0, 0, 0)
    token_of_plan = {plan_id: erased_token() for _pk, plan_id, _uid in found}
    old_ids = {uid for _pk, _plan, uid in found if not is_erased_userid(uid)}
    # Batches first, then deliveries: the order in which sending (accepted batch, then its
    # deliveries) takes the same locks.
    batches, dropped = _rewrite_batches(token_of_plan, old_ids)
    rows = list(
        Delivery.objects.select_for_update()
        .filter(pk__in=sorted(pk for pk, _p, _u in found))
        .order_by("pk")
    )
    not_sent = 0
    for row in rows:
        row.dingtalk_user_id = token_of_plan[row.plan_id]
        row.recipient = None
        row.latitude = None
        row.longitude = None
        row.outreach_outcome = ""
        if row.state == DeliveryState.QUEUED and row.batch_id in dropped:
            row.state = DeliveryState.CANCELLED
            not_sent += 1
    Delivery.objects.bulk_update(
        rows,
        ["dingtalk_user_id", "recipient", "latitude", "longitude", "outreach_outcome", "state"],
        batch_size=500,
    )
    return DeliveryErasure(len(rows), batches, not_sent)


def _rewrite_batches(token_of_plan: dict[int, str], old_ids: set[str]) -> tuple[int, set[int]]:
    """Replace the person's id in their plans' batches; returns (rewritten, queued ones left out)."""
    if not old_ids:
        return 0, set()
    candidates = Batch.objects.filter(dispatch__plan_id__in=list(token_of_plan)).exclude(userids=[])
    if connection.features.supports_json_field_contains:
        wanted = Q()
        for userid in sorted(old_ids):
            wanted |= Q(userids__contains=[userid])
        candidates = candidates.filter(wanted)
    locked = [
        b
        for b in candidates.select_for_update().select_related("dispatch").order_by("pk")
        if old_ids.intersection(str(u) for u in b.userids)
    ]
    dropped: set[int] = set()
    for batch in locked:
        if batch.status == BatchStatus.QUEUED:
            # Not sent yet: the erased person is left out of the call altogether.
            batch.userids = [u for u in batch.userids if u not in old_ids]
            batch.size = len(batch.userids)
            if not batch.userids:
                batch.status = BatchStatus.CANCELLED
            dropped.add(batch.pk)
        else:
            token = token_of_plan[batch.dispatch.plan_id]
            batch.userids = [token if u in old_ids else u for u in batch.userids]
    Batch.objects.bulk_update(locked, ["userids", "size", "status"], batch_size=200)
    return len(locked), dropped


def anonymise_late_deliveries(*, limit: int = 100) -> int:
    """Anonymise delivery rows written for people erased while their snapshot was running.

    A snapshot chunk reads its recipients before it writes their rows; a person erased in
    between gets a row the erasure could not see yet. Such a row still links an erased
    recipient (the erasure unlinks every row it handles), so the delivery sweeper finds and
    anonymises it within one sweep. Returns the rows anonymised.
    """
    late = list(
        Delivery.objects.filter(recipient__erased_at__isnull=False)
        .values_list("recipient_id", "recipient__department_id")
        .distinct()[:limit]
    )
    done = 0
    for recipient_id, department_id in late:
        with transaction.atomic():
            Recipient.objects.select_for_update().filter(pk=recipient_id).exists()
            done += anonymise_recipient_deliveries(
                recipient_id=recipient_id, department_id=department_id, dingtalk_user_id=""
            ).deliveries
    return done
