"""Every action the audit issue lists writes its event: one test per action, each driving the
real service (or view) that performs it and asserting actor, action and target.

Delivery actions run against the DingTalk simulator, like the delivery tests themselves.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP

from accounts import services as accounts_services
from accounts.models import Membership, Role
from audiences import services as audience_services
from audiences.importing import recipients_import
from audiences.models import Recipient, SyncState
from audiences.sync import directory_sync_request
from audiences.testing import csv_bytes, recipient_row
from audit.context import AuditContext, audit_context
from audit.exports import export_start
from audit.models import AuditEvent
from audit.selectors import EventFilters
from common.testing.cast import TEST_PASSWORD, verified_client_for
from delivery import messages
from delivery.models import Batch, Delivery, DeliveryPlan
from delivery.services import followup, lifecycle, planner, receipts, sweeper
from delivery.testing import (
    connect_demo_app,
    connect_department,
    make_notice,
    make_recipients,
    send_notice,
    stopped_clock_simulator,
)
from dingtalk.simulator.testing import running_simulator
from integrations.models import Trigger
from integrations.services import callers
from integrations.testing import signed_headers
from notices import approval as notice_approval
from notices import services as notice_services
from notices import templating as notice_templating
from notices.models import Notice, Tier
from notices.testing import (
    add_recipients,
    current_code,
    everyone_segment,
    submitted_notice,
    targeted_fields,
)

VERIFIED = AuditContext(otp_verified=True)


def only_event(action: str, **match: object) -> AuditEvent:
    """The one event with this action (and these fields): exactly one must exist."""
    events = list(AuditEvent.objects.filter(action=action, **match))
    assert len(events) == 1, f"{action}: {len(events)} events"
    return events[0]


def assert_target(event: AuditEvent, obj: object) -> None:
    assert event.target_type == obj._meta.label  # type: ignore[attr-defined]
    assert event.target_id == str(obj.pk)  # type: ignore[attr-defined]


def assert_system(event: AuditEvent) -> None:
    assert event.actor_id is None
    assert event.actor_label


# --- accounts: logins, failed logins, lockouts, second factor, roles, department settings --------


def login(client: Client, username: str, password: str = TEST_PASSWORD):
    return client.post(reverse("accounts:login"), {"username": username, "password": password})


@pytest.mark.django_db
def test_login(cast_a) -> None:
    login(Client(), cast_a.supervisor.username)
    event = only_event("accounts.logged_in")
    assert event.actor_id == cast_a.supervisor.pk
    assert_target(event, cast_a.supervisor)


@pytest.mark.django_db
def test_failed_login(cast_a) -> None:
    login(Client(), cast_a.supervisor.username, "not the password")
    event = only_event("accounts.login_failed")
    assert_system(event)
    assert cast_a.supervisor.username in event.actor_label
    assert event.target_type == ""  # nobody was identified
    assert event.data["username"] == cast_a.supervisor.username


@pytest.mark.django_db
def test_lockout(cast_a, settings) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, cast_a.supervisor.username, "nope")
    event = only_event("accounts.locked_out")
    assert_system(event)
    assert event.data["username"] == cast_a.supervisor.username


@pytest.mark.django_db
def test_totp_enrolment(cast_a) -> None:
    user = cast_a.pr_officer
    device = accounts_services.totp_device_for_enrolment(user=user)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    assert accounts_services.totp_enrol_confirm(
        user=user, device=device, token=f"{totp.token():06d}"
    )
    event = only_event("accounts.totp_enrolled")
    assert event.actor_id == user.pk
    assert_target(event, user)


@pytest.mark.django_db
def test_credentials_reset(cast_a) -> None:
    from accounts.credentials import credentials_reset_request

    credentials_reset_request(
        actor=cast_a.system_admin, user=cast_a.pr_officer, department=cast_a.department
    )
    event = only_event("accounts.credentials_reset")
    assert event.actor_id == cast_a.system_admin.pk
    assert_target(event, cast_a.pr_officer)
    assert event.department_id == cast_a.department.pk


@pytest.mark.django_db
def test_role_granted(cast_a, cast_b) -> None:
    membership = accounts_services.membership_grant(
        actor=cast_a.system_admin,
        user=cast_b.pr_officer,
        department=cast_a.department,
        role=Role.PR_OFFICER,
    )
    event = only_event("accounts.role_granted", target_id=str(membership.pk))
    assert event.actor_id == cast_a.system_admin.pk
    assert_target(event, membership)
    assert event.data["role"] == Role.PR_OFFICER


@pytest.mark.django_db
def test_role_revoked(cast_a) -> None:
    membership = Membership.objects.get(user=cast_a.pr_officer, department=cast_a.department)
    accounts_services.membership_revoke(actor=cast_a.system_admin, membership=membership)
    event = only_event("accounts.role_revoked")
    assert event.actor_id == cast_a.system_admin.pk
    assert_target(event, membership)
    assert event.data["user"] == cast_a.pr_officer.username


@pytest.mark.django_db
def test_department_settings_changed(cast_a) -> None:
    accounts_services.department_update(
        actor=cast_a.system_admin, department=cast_a.department, changes={"name_en": "Water"}
    )
    event = only_event("accounts.department_updated")
    assert event.actor_id == cast_a.system_admin.pk
    assert_target(event, cast_a.department)


# --- audiences: imports, directory syncs, segments, erasures -------------------------------------


@pytest.mark.django_db
def test_recipient_import_with_file_hash_and_counts(cast_a) -> None:
    import hashlib

    data = csv_bytes(recipient_row(i) for i in range(3))
    recipients_import(
        actor=cast_a.department_admin, department=cast_a.department, data=data, file_name="a.csv"
    )
    event = only_event("audiences.imported")
    assert event.actor_id == cast_a.department_admin.pk
    assert event.department_id == cast_a.department.pk
    assert event.target_label == "a.csv"
    assert hashlib.sha256(data).hexdigest() in str(event.data)
    assert event.data["new"] == 3


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=60, readers={"enabled": False}) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    return connect_demo_app(cast_a.department, sim, "WSD")


@pytest.mark.django_db
def test_directory_sync(cast_a, settings, django_capture_on_commit_callbacks) -> None:
    # Its own simulator on a running clock: the walk is paced against real per-second limits.
    with running_simulator(directory_size=60) as dt:
        settings.DINGTALK_BASE_URL = dt.base_url
        cache.clear()
        wsd = connect_department(cast_a.department, next(a for a in dt.apps if a.code == "WSD"))
        with django_capture_on_commit_callbacks(execute=True):
            sync = directory_sync_request(actor=cast_a.department_admin, department=wsd)
    sync.refresh_from_db()
    assert sync.state == SyncState.DONE, sync.error
    requested = only_event("audiences.sync_requested")
    assert requested.actor_id == cast_a.department_admin.pk
    assert_target(requested, sync)
    synced = only_event("audiences.synced")
    assert_system(synced)
    assert_target(synced, sync)
    assert synced.department_id == wsd.pk


def segment_input(name: str) -> audience_services.SegmentInput:
    return audience_services.SegmentInput(name=name)


@pytest.mark.django_db
def test_segment_created(cast_a) -> None:
    segment = audience_services.segment_create(
        actor=cast_a.department_admin, department=cast_a.department, data=segment_input("All")
    )
    event = only_event("audiences.segment_created")
    assert event.actor_id == cast_a.department_admin.pk
    assert_target(event, segment)


@pytest.mark.django_db
def test_segment_changed(cast_a) -> None:
    segment = everyone_segment(cast_a.department)
    audience_services.segment_update(
        actor=cast_a.department_admin, segment=segment, data=segment_input("Renamed")
    )
    event = only_event("audiences.segment_changed")
    assert event.actor_id == cast_a.department_admin.pk
    assert_target(event, segment)


@pytest.mark.django_db
def test_segment_deleted(cast_a) -> None:
    segment = everyone_segment(cast_a.department)
    pk = segment.pk
    audience_services.segment_delete(actor=cast_a.department_admin, segment=segment)
    event = only_event("audiences.segment_deleted")
    assert event.actor_id == cast_a.department_admin.pk
    assert (event.target_type, event.target_id) == ("audiences.Segment", str(pk))


@pytest.mark.django_db
def test_erasure(cast_a) -> None:
    add_recipients(cast_a.department, 1)
    person = Recipient.objects.get()
    audience_services.recipient_erase(
        actor=cast_a.department_admin, recipient=person, reason="PDPO request"
    )
    event = only_event("audiences.erased")
    assert event.actor_id == cast_a.department_admin.pk
    assert_target(event, person)
    assert person.dingtalk_user_id not in event.target_label  # no personal data in the trail


# --- notices: each transition with its version hash, approvals and rejections -------------------


@pytest.fixture
def audience(cast_a):
    add_recipients(cast_a.department, 3)
    return everyone_segment(cast_a.department)


@pytest.mark.django_db
def test_notice_created(cast_a, audience) -> None:
    notice = notice_services.notice_create(
        actor=cast_a.pr_officer, department=cast_a.department, **targeted_fields(audience)
    )
    event = only_event("notices.created")
    assert event.actor_id == cast_a.pr_officer.pk
    assert_target(event, notice)
    assert event.data["version_hash"] == notice.version_hash


@pytest.mark.django_db
def test_notice_updated(cast_a, audience) -> None:
    notice = notice_services.notice_create(
        actor=cast_a.pr_officer, department=cast_a.department, **targeted_fields(audience)
    )
    notice = notice_services.notice_update(
        actor=cast_a.pr_officer, notice=notice, changes={"title_en": "Water off tonight"}
    )
    event = only_event("notices.updated")
    assert event.actor_id == cast_a.pr_officer.pk
    assert_target(event, notice)
    assert event.data["version_hash"] == notice.version_hash


@pytest.mark.django_db
def test_notice_submitted(cast_a, audience) -> None:
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    event = only_event("notices.submitted")
    assert event.actor_id == cast_a.pr_officer.pk
    assert_target(event, notice)
    assert event.data["version_hash"] == notice.version_hash


@pytest.mark.django_db
def test_approval_and_approved(cast_a, audience) -> None:
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    with audit_context(VERIFIED):
        notice_approval.notice_approve(
            actor=cast_a.supervisor,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token=current_code(cast_a.supervisor),
        )
    for action in ("notices.approval_recorded", "notices.approved"):
        event = only_event(action)
        assert event.actor_id == cast_a.supervisor.pk
        assert_target(event, notice)
        assert event.data["version_hash"] == notice.version_hash
        assert event.otp_verified


@pytest.mark.django_db
def test_refused_approval(cast_a, audience) -> None:
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    with pytest.raises(PermissionDenied):  # the author may not approve their own notice
        notice_approval.notice_approve(
            actor=cast_a.pr_officer, notice=notice, version_hash=notice.version_hash
        )
    event = only_event("notices.approval_refused")
    assert event.actor_id == cast_a.pr_officer.pk
    assert_target(event, notice)


@pytest.mark.django_db
def test_rejection(cast_a, audience) -> None:
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    rejected_hash = notice.version_hash
    notice_services.notice_reject(actor=cast_a.supervisor, notice=notice, reason="Wrong area")
    event = only_event("notices.rejected")
    assert event.actor_id == cast_a.supervisor.pk
    assert_target(event, notice)
    assert event.data["version_hash"] == rejected_hash


@pytest.mark.django_db
def test_cancellation(cast_a, audience) -> None:
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(audience))
    notice_services.notice_cancel(actor=cast_a.pr_officer, notice=notice, reason="Not needed")
    event = only_event("notices.cancelled")
    assert event.actor_id == cast_a.pr_officer.pk
    assert_target(event, notice)
    assert event.data["version_hash"] == Notice.objects.get(pk=notice.pk).version_hash


# --- delivery: dispatch start and end, batch outcomes, reminders, confirmations, recalls --------


@pytest.mark.django_db
def test_dispatch_started_and_finished(wsd) -> None:
    make_recipients(wsd, 5, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    send_notice(notice.pk)
    for action in ("delivery.dispatch_started", "delivery.dispatch_finished"):
        event = only_event(action)
        assert_system(event)
        assert_target(event, notice)
        assert event.department_id == wsd.pk


@pytest.mark.django_db
def test_accepted_batch(wsd, sim) -> None:
    make_recipients(wsd, 5, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    event = only_event("delivery.batch_accepted")
    assert_system(event)
    assert_target(event, notice)
    assert event.data["size"] == 5
    [batch] = event.data["batches"]
    assert batch["size"] == 5
    assert batch["task_id"]


@pytest.mark.django_db
def test_failed_batch(wsd, sim) -> None:
    make_recipients(wsd, 5, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    sim.sim.inject("asyncsend_v2", "errcode", errcode=40035)
    planner.plan_notice(notice.pk)
    event = only_event("delivery.batch_failed")
    assert_system(event)
    assert_target(event, notice)
    assert event.data["errcode"] == 40035


@pytest.mark.django_db
def test_batch_with_unknown_outcome(wsd, sim, settings) -> None:
    from accounts.channel import client_for_department

    settings.DELIVERY_CLAIM_STALE_S = 0
    settings.DELIVERY_QUEUED_STALE_S = 0
    make_recipients(wsd, 5, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    sim.sim.set_faults(timeout_hold_s=1.0)
    sim.sim.inject("asyncsend_v2", "timeout")
    client = client_for_department(wsd)
    old = client.timeout
    client.timeout = (1.0, 0.3)
    try:
        planner.plan_notice(notice.pk)
    finally:
        client.timeout = old
    sweeper.sweep()
    event = only_event("delivery.batch_unresolved")
    assert_system(event)
    assert_target(event, notice)


@pytest.mark.django_db
def test_pause_and_resume(wsd, cast_a) -> None:
    make_recipients(wsd, 5, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    send_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    DeliveryPlan.objects.filter(pk=plan.pk).update(status="sending")
    assert lifecycle.plan_pause(plan.pk, code="manual", reason="Check the wording")
    paused = only_event("delivery.paused")
    assert_system(paused)
    assert_target(paused, notice)
    lifecycle.plan_resume(actor=cast_a.supervisor, plan_id=plan.pk)
    resumed = only_event("delivery.resumed")
    assert resumed.actor_id == cast_a.supervisor.pk
    assert_target(resumed, notice)


def poll_all(plan: DeliveryPlan) -> None:
    for batch in Batch.objects.filter(dispatch__plan=plan):
        Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
        receipts.batch_poll_receipts(batch.pk)


@pytest.mark.django_db
def test_reminder(wsd, sim) -> None:
    make_recipients(wsd, 4, languages=("en",))
    notice = make_notice(
        wsd, tier=Tier.CLOSED_LOOP, max_reminders=1, remind_after_minutes=30, remind_whom="unread"
    )
    send_notice(notice.pk)
    sim.sim.advance(60)
    poll_all(DeliveryPlan.objects.get(notice=notice))
    later = timezone.now() + timedelta(minutes=31)
    assert followup.reminders_due_send(now=later) == 1
    event = only_event("delivery.reminded")
    assert_system(event)
    assert_target(event, notice)


@pytest.mark.django_db
def test_confirmation(wsd, sim) -> None:
    make_recipients(wsd, 2, languages=("en",))
    notice = make_notice(wsd, tier=Tier.CLOSED_LOOP, requires_confirmation=True)
    send_notice(notice.pk)
    person = Delivery.objects.filter(plan__notice=notice).order_by("pk").first()
    followup.delivery_confirm(token=messages.confirm_token(person.pk))
    event = only_event("delivery.confirmed")
    assert_system(event)
    # Pseudonymous: the trail cannot be rewritten when the person's data is erased.
    assert event.actor_label == f"recipient #{person.recipient_id}"
    assert person.dingtalk_user_id not in event.actor_label
    assert_target(event, notice)
    assert event.data["delivery"] == person.pk


@pytest.mark.django_db
def test_recall(wsd, cast_a) -> None:
    make_recipients(wsd, 5, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    send_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    batches = list(Batch.objects.filter(dispatch__plan=plan).values_list("status", "error"))
    assert plan.first_accepted_at is not None, (plan.status, plan.pause_reason, batches)
    followup.notice_recall(actor=cast_a.supervisor, notice=notice, reason="Wrong district")
    event = only_event("delivery.recalled")
    assert event.actor_id == cast_a.supervisor.pk
    assert_target(event, notice)


# --- integrations: calls from outside ------------------------------------------------------------


@pytest.fixture
def caller(cast_a):
    add_recipients(cast_a.department, 3)
    everyone_segment(cast_a.department, name="Sha Tin residents")
    templates = {
        t.code: t
        for t in notice_templating.templates_seed(actor=None, department=cast_a.department)
    }
    return callers.integration_create(
        actor=cast_a.system_admin,
        department=cast_a.department,
        name="Operations centre",
        templates=[templates["water-outage"]],
        rate_limit_per_minute=30,
    )


@pytest.mark.django_db
def test_integration_created(caller, cast_a) -> None:
    integration, _ = caller
    event = only_event("integrations.created")
    assert event.actor_id == cast_a.system_admin.pk
    assert_target(event, integration)


@pytest.mark.django_db
def test_integration_call(caller, client, django_capture_on_commit_callbacks) -> None:
    import json

    integration, secret = caller
    body = json.dumps(
        {
            "template": "water-outage",
            "segments": ["Sha Tin residents"],
            "values": {
                "area": "Sha Tin",
                "area_zh": "沙田",
                "start": "23:00",
                "end": "06:00",
                "reason": "mains repairs",
                "reason_zh": "水管維修",
            },
        }
    ).encode()
    headers = signed_headers(secret, body, idempotency_key="coverage-1")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("api:trigger", kwargs={"integration": integration.slug}),
            data=body,
            content_type="application/json",
            **headers,
        )
    assert response.status_code == 201, response.content
    event = only_event("integrations.trigger_accepted")
    assert_system(event)
    assert_target(event, Trigger.objects.get())
    assert event.department_id == integration.department_id


@pytest.mark.django_db
def test_integration_call_refused(caller, client) -> None:
    integration, _ = caller
    body = b'{"template": "water-outage"}'
    headers = signed_headers("not-the-secret", body, idempotency_key="coverage-2")
    response = client.post(
        reverse("api:trigger", kwargs={"integration": integration.slug}),
        data=body,
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 401
    event = only_event("integrations.trigger_refused")
    assert_system(event)
    assert_target(event, integration)


# --- every export: who exported what, with which filters -----------------------------------------


@pytest.mark.django_db
def test_audit_export(cast_a) -> None:
    accounts_services.department_update(
        actor=cast_a.system_admin, department=cast_a.department, changes={"name_en": "Water"}
    )
    started = export_start(
        actor=cast_a.auditor, filters=EventFilters(action="accounts.department_updated"), fmt="csv"
    )
    assert b"".join(started.chunks or ())
    event = only_event("audit.exported")
    assert event.actor_id == cast_a.auditor.pk
    assert event.department_id == cast_a.department.pk
    assert event.data["filters"] == {"action": "accounts.department_updated"}


@pytest.mark.django_db
def test_recipient_export(cast_a) -> None:
    add_recipients(cast_a.department, 2)
    client = verified_client_for(cast_a.department_admin)
    response = client.post(
        reverse("admin:audiences_recipient_export"),
        {
            "format": "0",
            "resource": "0",
            **{f"recipientresource_{f}": "on" for f in ("dingtalk_user_id", "name")},
        },
    )
    assert response.status_code == 200
    event = only_event("audiences.exported")
    assert event.actor_id == cast_a.department_admin.pk
    assert event.department_id == cast_a.department.pk
    assert event.data["rows"] == 2


@pytest.mark.django_db
def test_outreach_export(wsd, cast_a) -> None:
    make_recipients(wsd, 2, languages=("en",))
    notice = make_notice(wsd, tier=Tier.CLOSED_LOOP)
    send_notice(notice.pk)
    followup.outreach_rows(actor=cast_a.supervisor, plan=DeliveryPlan.objects.get(notice=notice))
    event = only_event("delivery.outreach_exported")
    assert event.actor_id == cast_a.supervisor.pk
    assert_target(event, notice)
