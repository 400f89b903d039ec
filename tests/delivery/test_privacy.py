"""Erasure reaches the delivery history: anonymous counts stay, nothing names the person."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audiences.models import Recipient
from audiences.services import recipient_erase, recipient_update
from audit.models import AuditEvent
from delivery import messages
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    OutreachStatus,
)
from delivery.privacy import ERASED_PREFIX, anonymise_recipient_deliveries
from delivery.selectors import plan_figures
from delivery.services import followup, lifecycle, planner, receipts, sweeper
from delivery.testing import (
    connect_demo_app,
    connect_department,
    make_notice,
    make_recipients,
    stopped_clock_simulator,
)
from notices.models import Tier

APP_KEY = "ding-demo-wsd"
NAME = "Chan Tai Man"
MOBILE = "91234567"
LATITUDE, LONGITUDE = 22.3193, 114.1694  # the drill's meeting point, as the browser sent it


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=200, readers={"enabled": False}) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    return connect_demo_app(cast_a.department, sim, "WSD")


def rows_holding(*needles: str) -> list[tuple[str, str]]:
    """(table, needle) for every row of every table whose text holds one of the needles."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                text = " ".join(str(v) for v in row)
                found.extend((table, n) for n in needles if n in text)
    return found


def figures(plan: DeliveryPlan) -> dict:
    data = plan_figures(DeliveryPlan.objects.get(pk=plan.pk))
    return {k: v for k, v in data.items() if k not in ("updated_at", "eta_at", "eta_s")}


def poll_all(sim, plan: DeliveryPlan) -> None:
    for batch in Batch.objects.filter(dispatch__plan=plan, status=BatchStatus.ACCEPTED):
        Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
        receipts.batch_poll_receipts(batch.pk)


def named_person(cast, userid: str) -> Recipient:
    person = Recipient.objects.get(dingtalk_user_id=userid)
    return recipient_update(
        actor=cast.department_admin, recipient=person, changes={"name": NAME, "mobile": MOBILE}
    )


@pytest.mark.django_db
def test_erasure_leaves_no_trace_of_the_person_and_the_dashboard_unchanged(
    sim, wsd, cast_a, client
) -> None:
    # The cast's staff hold DingTalk ids 1-6 of the directory: the recipients here start at 10.
    make_recipients(wsd, 3, start=10, languages=("en",))
    person = named_person(cast_a, "wsd0000011")
    userid = person.dingtalk_user_id
    notice = make_notice(wsd, tier=Tier.CLOSED_LOOP, requires_confirmation=True)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    sim.sim.advance(5)
    theirs = Delivery.objects.get(plan=plan, recipient=person)
    token = messages.confirm_token(theirs.pk)
    followup.delivery_confirm(token=token, latitude=LATITUDE, longitude=LONGITUDE)
    poll_all(sim, plan)
    other = Delivery.objects.filter(plan=plan).exclude(pk=theirs.pk).first()
    Delivery.objects.filter(pk__in=[theirs.pk, other.pk]).update(outreach=OutreachStatus.OPEN)
    followup.outreach_close(
        actor=cast_a.pr_officer, delivery=theirs, outcome=f"Phoned {NAME} at {MOBILE}"
    )
    followup.outreach_close(actor=cast_a.pr_officer, delivery=other, outcome="Phoned, fine")
    # Before: the person is there to be found (the check below is not vacuous).
    assert {n for _t, n in rows_holding(userid, NAME, MOBILE, str(LATITUDE))} == {
        userid,
        NAME,
        MOBILE,
        str(LATITUDE),
    }
    before = figures(plan)
    assert (before["confirmed"], before["outreach_open"]) == (1, 0)

    recipient_erase(actor=cast_a.department_admin, recipient=person, reason="PDPO request 7")

    assert rows_holding(userid, NAME, MOBILE, str(LATITUDE), str(LONGITUDE)) == []
    assert figures(plan) == before
    theirs.refresh_from_db()
    assert theirs.dingtalk_user_id.startswith(ERASED_PREFIX)
    assert (theirs.recipient_id, theirs.latitude, theirs.longitude) == (None, None, None)
    assert theirs.outreach_outcome == ""
    assert theirs.confirmed_at is not None  # the count keeps its time
    assert theirs.outreach == OutreachStatus.CLOSED
    other.refresh_from_db()
    assert other.outreach_outcome.startswith("Phoned")  # nobody else's row changed
    batch = Batch.objects.get(pk=theirs.batch_id)  # per-person batches: one id each
    assert batch.userids == [theirs.dingtalk_user_id]
    event = AuditEvent.objects.get(action="audiences.erased")
    assert event.data == {
        "reason": "PDPO request 7",
        "deliveries_anonymised": 1,
        "batches_rewritten": 1,
        "deliveries_not_sent": 0,
    }
    # The personal link is dead: a late click records nothing about them.
    assert followup.delivery_for_token(token) is None
    assert client.get(f"/delivery/c/{token}/").status_code == 404


@pytest.mark.django_db
def test_a_person_erased_before_their_batch_went_out_gets_nothing(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 3, start=10, languages=("en",))
    good_ref = wsd.dingtalk_secret_ref
    wsd.dingtalk_secret_ref = "env:DELIVERY_TEST_SECRET_ABSENT"
    wsd.save()
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)  # paused on the credentials: the batch waits, queued
    plan = DeliveryPlan.objects.get(notice=notice)
    person = Recipient.objects.get(dingtalk_user_id="wsd0000011")

    recipient_erase(actor=cast_a.department_admin, recipient=person)

    batch = Batch.objects.get(dispatch__plan=plan)
    assert (batch.status, batch.size) == (BatchStatus.QUEUED, 2)
    assert "wsd0000011" not in batch.userids
    states = Counter(Delivery.objects.filter(plan=plan).values_list("state", flat=True))
    assert states == {DeliveryState.QUEUED: 2, DeliveryState.CANCELLED: 1}
    assert AuditEvent.objects.get(action="audiences.erased").data["deliveries_not_sent"] == 1
    wsd.dingtalk_secret_ref = good_ref
    wsd.save()
    lifecycle.plan_resume(actor=None, plan_id=plan.pk)
    sim.sim.advance(5)
    assert sim.sim.inbox("wsd0000011", APP_KEY) == []
    assert [len(sim.sim.inbox(u, APP_KEY)) for u in ("wsd0000010", "wsd0000012")] == [1, 1]
    assert rows_holding("wsd0000011") == []


@pytest.mark.django_db
def test_erased_people_get_no_reminder_and_no_outreach_call(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 4, start=10, languages=("en",))
    notice = make_notice(
        wsd, tier=Tier.CLOSED_LOOP, max_reminders=1, remind_after_minutes=30, remind_whom="unread"
    )
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    sim.sim.advance(60)
    poll_all(sim, plan)
    assert Delivery.objects.filter(plan=plan, state=DeliveryState.UNREAD).count() == 4
    recipient_erase(
        actor=cast_a.department_admin,
        recipient=Recipient.objects.get(dingtalk_user_id="wsd0000012"),
    )
    later = timezone.now() + timedelta(minutes=31)
    assert followup.reminders_due_send(now=later) == 1
    reminder = Batch.objects.get(dispatch__plan=plan, dispatch__round=1)
    assert sorted(reminder.userids) == ["wsd0000010", "wsd0000011", "wsd0000013"]
    assert followup.reminders_due_send(now=later + timedelta(minutes=31)) == 0
    listed = Delivery.objects.filter(plan=plan, outreach=OutreachStatus.OPEN)
    assert listed.count() == 3
    assert not listed.filter(dingtalk_user_id__startswith=ERASED_PREFIX).exists()


@pytest.mark.django_db(transaction=True)
def test_anonymising_runs_only_inside_the_erasure_transaction() -> None:
    with pytest.raises(RuntimeError):
        anonymise_recipient_deliveries(recipient_id=1, department_id=1, dingtalk_user_id="u1")


@pytest.mark.django_db
def test_rows_whose_link_is_gone_are_found_by_user_id_in_the_department_only(
    sim, wsd, cast_a, cast_b
) -> None:
    fehd = connect_department(cast_b.department, next(a for a in sim.apps if a.code == "FEHD"))
    make_recipients(wsd, 2, start=10, languages=("en",))
    # Another department's recipient under the same user id is another person.
    make_recipients(fehd, 2, start=10, languages=("en",), userid_prefix="wsd")
    ours, theirs = make_notice(wsd, tier=Tier.TARGETED), make_notice(fehd, tier=Tier.TARGETED)
    planner.plan_notice(ours.pk)
    planner.plan_notice(theirs.pk)
    person = Recipient.objects.get(department=wsd, dingtalk_user_id="wsd0000011")
    lost = Delivery.objects.get(plan__notice=ours, recipient=person)
    Delivery.objects.filter(pk=lost.pk).update(recipient=None)  # e.g. an earlier row deleted

    recipient_erase(actor=cast_a.department_admin, recipient=person)

    lost.refresh_from_db()
    assert lost.dingtalk_user_id.startswith(ERASED_PREFIX)
    other = Delivery.objects.get(plan__notice=theirs, dingtalk_user_id="wsd0000011")
    assert other.recipient.department == fehd
    assert "wsd0000011" in Batch.objects.get(dispatch__plan__notice=theirs).userids


@pytest.mark.django_db
def test_a_row_a_racing_snapshot_wrote_after_the_erasure_is_anonymised_by_the_sweeper(
    sim, wsd, cast_a
) -> None:
    make_recipients(wsd, 2, start=20, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    person = Recipient.objects.get(dingtalk_user_id="wsd0000021")
    recipient_erase(actor=cast_a.department_admin, recipient=person)
    # What a snapshot chunk that read the person just before the erasure committed writes:
    # a row with the person's link and old id, which the erasure could not see.
    row = Delivery.objects.filter(plan=plan).first()
    late = Delivery.objects.create(
        plan=plan,
        dispatch_id=row.dispatch_id,
        batch_id=row.batch_id,
        recipient=person,
        dingtalk_user_id="wsd0000021-late",
        latitude=22.3,
        longitude=114.2,
    )
    assert sweeper.sweep()["anonymised"] == 1
    late.refresh_from_db()
    assert late.recipient_id is None
    assert late.dingtalk_user_id.startswith(ERASED_PREFIX)
    assert (late.latitude, late.longitude) == (None, None)
    assert sweeper.sweep()["anonymised"] == 0  # ran twice: nothing left


@pytest.mark.django_db
def test_a_flow_control_drop_is_not_sent_again_to_a_person_erased_since(
    sim, wsd, cast_a, settings
) -> None:
    sim.sim.set_limits(recipients_per_minute=150)
    make_recipients(wsd, 200, languages=("en",))  # the simulator's directory holds 200
    notice = make_notice(wsd, tier=Tier.TARGETED)
    # The governor would hold the batches back; let them through to provoke silent drops.
    settings.DELIVERY_LIMITS = {**settings.DELIVERY_LIMITS, "recipients_per_minute": 10_000}
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    sim.sim.advance(120)
    last = Batch.objects.filter(dispatch__plan=plan).order_by("-seq").first()
    dropped_person = Recipient.objects.get(dingtalk_user_id=last.userids[-1])
    recipient_erase(actor=cast_a.department_admin, recipient=dropped_person)
    for batch_id in list(Batch.objects.filter(dispatch__plan=plan).values_list("pk", flat=True)):
        Batch.objects.filter(pk=batch_id).update(next_poll_at=timezone.now())
        receipts.batch_poll_receipts(batch_id)
    requeued = Batch.objects.filter(dispatch__plan=plan, seq__gte=2)
    resent = {u for batch in requeued for u in batch.userids}
    assert len(resent) == 49  # the 50 people over the 150 a minute, but for the erased one
    assert "wsd0000199" not in resent
    assert not any(u.startswith(ERASED_PREFIX) for u in resent)
    sim.sim.advance(5)
    assert len(sim.sim.inbox("wsd0000199", APP_KEY)) == 0
