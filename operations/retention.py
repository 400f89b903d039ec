"""Data lifecycle: per-person delivery data is anonymised once its department's period ends.

Each department's RetentionPolicy (defaults: drill locations 7 days, per-person rows 90 days)
says how long. Expired rows are anonymised in place, so every count a notice's dashboard and
receipt report shows stays the same: the row keeps its state, district and outreach status;
it loses the user id (replaced by `erased:<row id>`, unique and meaningless), the link to the
recipient, the location, the outreach outcome and assignee, and its times are cut to the day (00:00 UTC).
The batches of an expired notice forget their user ids. Each run writes one audit event per
department with what it removed; a second run finds nothing and writes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.db.models import CharField, F, Q, Value
from django.db.models.functions import Cast, Concat, TruncDay
from django.utils import timezone

from accounts import permissions as perms
from accounts.models import Department
from audit.services import audit_record
from common.types import Actor
from delivery.models import Batch, BatchStatus, Delivery, DeliveryPlan
from delivery.privacy import ERASED_PREFIX
from operations.audit_actions import OperationsAuditAction
from operations.models import DEFAULT_LOCATION_DAYS, DEFAULT_PERSON_ROWS_DAYS, RetentionPolicy

CHUNK = 5_000


@dataclass(frozen=True)
class RetentionResult:
    locations_removed: int
    rows_anonymised: int
    batches_cleared: int


def policy_for(department: Department) -> tuple[int, int]:
    policy = RetentionPolicy.objects.filter(department=department).first()
    if policy is None:
        return DEFAULT_LOCATION_DAYS, DEFAULT_PERSON_ROWS_DAYS
    return policy.location_days, policy.person_rows_days


def retention_policy_set(
    *, actor: Actor, department: Department, location_days: int, person_rows_days: int
) -> RetentionPolicy:
    """A department's system administrator changes the periods; audited with the old and new values."""
    perms.require_department_perm(actor, perms.ADMINISTER_DEPARTMENT, department)
    for name, value in (("location_days", location_days), ("person_rows_days", person_rows_days)):
        if not 1 <= value <= 3650:
            raise ValueError(f"{name} must be between 1 and 3650 days")
    with transaction.atomic():
        policy, _created = RetentionPolicy.objects.select_for_update().get_or_create(
            department=department
        )
        before = {
            "location_days": policy.location_days,
            "person_rows_days": policy.person_rows_days,
        }
        policy.location_days = location_days
        policy.person_rows_days = person_rows_days
        policy.save()
        audit_record(
            actor=actor,
            action=OperationsAuditAction.RETENTION_CHANGED,
            target=department,
            department=department,
            data={
                "before": before,
                "after": {"location_days": location_days, "person_rows_days": person_rows_days},
            },
        )
    return policy


def _remove_locations(department: Department, cutoff: dt.datetime) -> int:
    expired = Delivery.objects.filter(plan__department=department, latitude__isnull=False).filter(
        Q(confirmed_at__lt=cutoff) | Q(confirmed_at__isnull=True, plan__created_at__lt=cutoff)
    )
    return expired.update(latitude=None, longitude=None)


def _anonymise_rows(plan_ids: list[int]) -> int:
    # Cut to the day in UTC: the database stores UTC, and a truncation in another zone would be
    # written back as if it were UTC. Midnight UTC is 08:00 in Hong Kong.
    zone = dt.UTC
    done = 0
    while True:
        chunk = list(
            Delivery.objects.filter(plan_id__in=plan_ids)
            .exclude(dingtalk_user_id__startswith=ERASED_PREFIX)
            .values_list("pk", flat=True)[:CHUNK]
        )
        if not chunk:
            return done
        done += Delivery.objects.filter(pk__in=chunk).update(
            dingtalk_user_id=Concat(Value(ERASED_PREFIX), Cast(F("pk"), CharField())),
            recipient=None,
            latitude=None,
            longitude=None,
            outreach_outcome="",
            outreach_assignee=None,
            accepted_at=TruncDay("accepted_at", tzinfo=zone),
            first_read_at=TruncDay("first_read_at", tzinfo=zone),
            confirmed_at=TruncDay("confirmed_at", tzinfo=zone),
        )


def _clear_batches(plan_ids: list[int]) -> int:
    return (
        Batch.objects.filter(dispatch__plan_id__in=plan_ids)
        .exclude(status__in=[BatchStatus.QUEUED, BatchStatus.CLAIMED])
        .exclude(userids=[])
        .update(userids=[])
    )


def retention_apply_department(department: Department, now: dt.datetime) -> RetentionResult:
    location_days, rows_days = policy_for(department)
    with transaction.atomic():
        locations = _remove_locations(department, now - dt.timedelta(days=location_days))
        plan_ids = list(
            DeliveryPlan.objects.filter(
                department=department, created_at__lt=now - dt.timedelta(days=rows_days)
            ).values_list("pk", flat=True)
        )
        rows = _anonymise_rows(plan_ids) if plan_ids else 0
        batches = _clear_batches(plan_ids) if plan_ids else 0
        result = RetentionResult(locations, rows, batches)
        if locations or rows or batches:
            audit_record(
                actor=None,
                action=OperationsAuditAction.RETENTION_APPLIED,
                target=department,
                department=department,
                data={
                    "location_days": location_days,
                    "person_rows_days": rows_days,
                    "locations_removed": locations,
                    "rows_anonymised": rows,
                    "batches_cleared": batches,
                },
            )
    return result


def retention_apply(now: dt.datetime | None = None) -> dict[str, RetentionResult]:
    """Every department's expired data, one transaction and one audit event per department."""
    moment = now or timezone.now()
    return {
        department.code: retention_apply_department(department, moment)
        for department in Department.objects.order_by("code")
    }
