"""Data lifecycle: expired per-person data is anonymised, counts stay, audited once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone

from audiences.models import Recipient
from audit.models import AuditEvent
from delivery.models import Batch, BatchStatus, Delivery, DeliveryPlan, DeliveryState, Dispatch
from delivery.testing import make_notice, make_recipients
from operations.audit_actions import OperationsAuditAction
from operations.models import RetentionPolicy
from operations.retention import retention_apply, retention_policy_set
from operations.tasks import apply_retention_task


def sent_plan(department, *, age_days: float, people: int = 3) -> DeliveryPlan:
    """A sent notice: its plan, one accepted batch and a row per person, read and confirmed."""
    notice = make_notice(department)
    plan = DeliveryPlan.objects.create(notice=notice, department=department, strategy="users")
    dispatch = Dispatch.objects.create(plan=plan, language="en", message={}, content_hash="x")
    recipients = list(Recipient.objects.filter(department=department).order_by("pk")[:people])
    batch = Batch.objects.create(
        dispatch=dispatch,
        seq=0,
        userids=[r.dingtalk_user_id for r in recipients],
        size=len(recipients),
        status=BatchStatus.ACCEPTED,
    )
    at = timezone.now() - dt.timedelta(days=age_days)
    for r in recipients:
        Delivery.objects.create(
            plan=plan,
            dispatch=dispatch,
            batch=batch,
            recipient=r,
            dingtalk_user_id=r.dingtalk_user_id,
            state=DeliveryState.READ,
            accepted_at=at,
            first_read_at=at + dt.timedelta(minutes=7),
            confirmed_at=at + dt.timedelta(minutes=9),
            latitude=22.3,
            longitude=114.2,
            outreach_outcome="called, spoke to the resident",
        )
    DeliveryPlan.objects.filter(pk=plan.pk).update(created_at=at)
    return plan


@pytest.fixture
def people(cast_a) -> None:
    make_recipients(cast_a.department, 6)


@pytest.mark.django_db
def test_locations_go_after_7_days_and_rows_after_90(cast_a, people) -> None:
    fresh = sent_plan(cast_a.department, age_days=2)
    week_old = sent_plan(cast_a.department, age_days=8)
    old = sent_plan(cast_a.department, age_days=91)
    results = retention_apply()[cast_a.department.code]
    assert results.locations_removed == 6  # the 8- and 91-day-old notices' people
    assert results.rows_anonymised == 3
    assert results.batches_cleared == 1

    assert Delivery.objects.filter(plan=fresh, latitude__isnull=False).count() == 3
    assert Delivery.objects.filter(plan=week_old, latitude__isnull=True).count() == 3
    assert Delivery.objects.filter(plan=week_old, recipient__isnull=False).count() == 3
    rows = list(Delivery.objects.filter(plan=old))
    assert all(r.dingtalk_user_id.startswith("erased:") for r in rows)
    assert all(r.recipient_id is None and r.outreach_outcome == "" for r in rows)
    # The counts the dashboard shows are unchanged: states, read and confirmed.
    assert sum(r.state == DeliveryState.READ for r in rows) == 3
    assert sum(r.first_read_at is not None and r.confirmed_at is not None for r in rows) == 3
    assert all(r.first_read_at.astimezone(dt.UTC).time() == dt.time(0) for r in rows)
    assert Batch.objects.get(dispatch__plan=old).userids == []


@pytest.mark.django_db
def test_ran_twice_anonymises_once_and_audits_once(cast_a, people) -> None:
    sent_plan(cast_a.department, age_days=120)
    first = apply_retention_task.apply().get()
    second = apply_retention_task.apply().get()
    assert first == {"locations_removed": 3, "rows_anonymised": 3}
    assert second == {"locations_removed": 0, "rows_anonymised": 0}
    events = AuditEvent.objects.filter(action=OperationsAuditAction.RETENTION_APPLIED)
    assert events.count() == 1
    assert events.get().data["rows_anonymised"] == 3
    assert events.get().department_id == cast_a.department.pk


@pytest.mark.django_db
def test_a_department_setting_changes_the_periods_and_is_audited(cast_a, people) -> None:
    plan = sent_plan(cast_a.department, age_days=20)
    retention_policy_set(
        actor=cast_a.system_admin,
        department=cast_a.department,
        location_days=30,
        person_rows_days=14,
    )
    result = retention_apply()[cast_a.department.code]
    assert result.locations_removed == 0
    assert result.rows_anonymised == 3
    # Locations of anonymised rows go with them.
    assert Delivery.objects.filter(plan=plan, latitude__isnull=False).count() == 0
    changed = AuditEvent.objects.get(action=OperationsAuditAction.RETENTION_CHANGED)
    assert changed.data["after"] == {"location_days": 30, "person_rows_days": 14}


@pytest.mark.django_db
def test_only_the_departments_system_administrator_changes_retention(cast_a, cast_b) -> None:
    with pytest.raises(PermissionDenied):
        retention_policy_set(
            actor=cast_a.pr_officer,
            department=cast_a.department,
            location_days=1,
            person_rows_days=1,
        )
    with pytest.raises(PermissionDenied):
        retention_policy_set(
            actor=cast_b.system_admin,
            department=cast_a.department,
            location_days=1,
            person_rows_days=1,
        )
    with pytest.raises(ValueError, match="person_rows_days"):
        retention_policy_set(
            actor=cast_a.system_admin,
            department=cast_a.department,
            location_days=7,
            person_rows_days=0,
        )


@pytest.mark.django_db
def test_the_system_administrator_sets_retention_in_the_back_office(
    cast_a, cast_b, verified_client
) -> None:
    client = verified_client(cast_a.system_admin)
    add = reverse("admin:operations_retentionpolicy_add")
    form = client.get(add)
    assert form.status_code == 200
    departments = {
        c[0].value for c in form.context["adminform"].form.fields["department"].choices if c[0]
    }
    assert departments == {cast_a.department.pk}
    response = client.post(
        add, {"department": cast_a.department.pk, "location_days": 3, "person_rows_days": 30}
    )
    assert response.status_code == 302, response.content
    assert RetentionPolicy.objects.get(department=cast_a.department).person_rows_days == 30
    assert AuditEvent.objects.filter(action=OperationsAuditAction.RETENTION_CHANGED).count() == 1
    refused = client.post(
        add, {"department": cast_b.department.pk, "location_days": 3, "person_rows_days": 30}
    )
    assert refused.status_code == 200  # the form names the department as not a valid choice
    assert not RetentionPolicy.objects.filter(department=cast_b.department).exists()
