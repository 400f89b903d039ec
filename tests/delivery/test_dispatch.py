"""Plan -> batches -> send -> receipts against the simulator; every task ran twice, sent once."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from audit.models import AuditEvent
from delivery import enqueue, tasks
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    PlanStatus,
    effective_state_in,
)
from delivery.services import lifecycle, planner, receipts, sender, sweeper
from delivery.testing import (
    connect_demo_app,
    count_directory,
    make_notice,
    make_recipients,
    stopped_clock_simulator,
)
from notices.models import Notice, Status, Tier
from notices.testing import seal_approved

ACCEPTED = (DeliveryState.ACCEPTED,)  # what DingTalk took: see delivery.models.effective_state


def roundtrip(*args):
    return json.loads(json.dumps(list(args)))


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=400) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    return connect_demo_app(cast_a.department, sim, "WSD")


def inbox_counts(sim, userids, app_key="ding-demo-wsd"):
    sim.sim.advance(5)  # the simulator hands a task out at 5,000 people a second
    return Counter(len(sim.sim.inbox(u, app_key)) for u in userids)


@pytest.mark.django_db
def test_a_targeted_notice_goes_out_in_batches_of_100_once_per_person(sim, wsd) -> None:
    make_recipients(wsd, 250)
    notice = make_notice(wsd, tier=Tier.TARGETED)
    tasks.plan_notice_task.delay(*roundtrip(notice.pk))
    tasks.plan_notice_task.delay(*roundtrip(notice.pk))  # ran twice
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.planned == 250
    assert plan.status == PlanStatus.DONE
    batches = Batch.objects.filter(dispatch__plan=plan)
    assert all(b.size <= 100 for b in batches)
    assert set(batches.values_list("status", flat=True)) == {BatchStatus.ACCEPTED}
    # One message per language; people who read both get the Chinese one.
    assert set(plan.dispatches.values_list("language", flat=True)) == {"en", "zh"}
    from notices.content import notice_message

    zh = plan.dispatches.get(language="zh")
    assert zh.message == notice_message(notice, "zh")  # what the approvers previewed
    report = tasks.send_batches_task.delay(*roundtrip(list(batches.values_list("pk", flat=True))))
    assert report.get() == {  # ran twice: every batch skipped
        "sent": 0,
        "skipped": batches.count(),
        "paused": 0,
        "failed": 0,
        "unknown": 0,
        "retry": 0,
    }
    userids = list(Delivery.objects.filter(plan=plan).values_list("dingtalk_user_id", flat=True))
    assert inbox_counts(sim, userids) == Counter({1: 250})
    assert sim.sim.counters()["calls"]["asyncsend_v2"] == batches.count()
    notice.refresh_from_db()
    assert notice.status == Status.SENT
    actions = set(
        AuditEvent.objects.filter(target_id=str(notice.pk)).values_list("action", flat=True)
    )
    assert {"delivery.dispatch_started", "delivery.dispatch_finished"} <= actions


@pytest.mark.django_db
def test_receipts_record_read_unread_and_stop_when_all_read(sim, wsd) -> None:
    make_recipients(wsd, 40, languages=("en",))
    notice = make_notice(wsd, tier=Tier.CLOSED_LOOP)
    planner.plan_notice(notice.pk)
    batch = Batch.objects.get(dispatch__plan__notice=notice)
    sim.sim.advance(60)
    reader = batch.userids[0]
    sim.sim.mark_read(batch.task_id, reader)
    Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
    assert tasks.poll_receipts_task.delay().get() == 1
    # Ran twice: the second poll of the same lease finds the batch already polled.
    assert tasks.poll_batch_receipts_task.delay(*roundtrip([batch.pk])).get() == {"skipped": 1}
    read = Delivery.objects.get(plan__notice=notice, dingtalk_user_id=reader)
    assert read.state == DeliveryState.READ
    assert read.first_read_at is not None
    states = Counter(Delivery.objects.filter(plan__notice=notice).values_list("state", flat=True))
    assert states[DeliveryState.UNREAD] + states[DeliveryState.READ] == 40
    batch.refresh_from_db()
    assert batch.polls_done == 1
    assert not batch.receipts_done
    for userid in batch.userids:
        sim.sim.mark_read(batch.task_id, userid)
    Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
    assert receipts.batch_poll_receipts(batch.pk) == "done"
    assert Delivery.objects.filter(plan__notice=notice, state=DeliveryState.READ).count() == 40


@pytest.mark.django_db
def test_flow_control_drops_are_requeued_and_delivered_later(sim, wsd) -> None:
    sim.sim.set_limits(recipients_per_minute=150)
    make_recipients(wsd, 250, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    with pytest.MonkeyPatch.context() as mp:
        # The governor would hold the batches back; let them through to provoke silent drops.
        mp.setitem(django_settings.DELIVERY_LIMITS, "recipients_per_minute", 10_000)
        planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    sim.sim.advance(120)
    for batch_id in list(Batch.objects.filter(dispatch__plan=plan).values_list("pk", flat=True)):
        Batch.objects.filter(pk=batch_id).update(next_poll_at=timezone.now())
        receipts.batch_poll_receipts(batch_id)
    # The 100 people over the simulator's 150 a minute came back as 143103 and were re-queued
    # in two new batches (sent at once here: Celery runs eagerly in tests).
    requeued = Batch.objects.filter(dispatch__plan=plan, seq__gte=3)
    assert sorted(requeued.values_list("size", flat=True)) == [50, 50]
    assert set(requeued.values_list("status", flat=True)) == {BatchStatus.ACCEPTED}
    assert Delivery.objects.filter(effective_state_in(ACCEPTED), plan=plan).count() == 100
    userids = list(Delivery.objects.filter(plan=plan).values_list("dingtalk_user_id", flat=True))
    assert inbox_counts(sim, userids) == Counter({1: 250})


@pytest.mark.django_db
def test_flow_control_drops_are_sent_again_once_whatever_later_polls_repeat(sim, wsd) -> None:
    # Dedupe off: a second copy would reach the phone instead of coming back as 143106.
    sim.sim.set_limits(recipients_per_minute=150, same_content_once_per_day=False)
    make_recipients(wsd, 250, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(django_settings.DELIVERY_LIMITS, "recipients_per_minute", 10_000)
        planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    originals = list(Batch.objects.filter(dispatch__plan=plan).values_list("pk", flat=True))
    # Every poll of DingTalk's schedule (+1, 3, 10, 30 min, +2, 6, 23 h) repeats the drops.
    for _ in range(7):
        sim.sim.advance(120)
        for batch_id in originals:
            Batch.objects.filter(pk=batch_id, receipts_done=False).update(
                next_poll_at=timezone.now()
            )
            receipts.batch_poll_receipts(batch_id)
    assert Batch.objects.filter(dispatch__plan=plan).count() == len(originals) + 2
    dropped = Batch.objects.filter(dispatch__plan=plan, drops_requeued=True)
    assert dropped.count() == 2
    # Nobody left unread in them (readers opened it): those batches are settled.
    userids = list(Delivery.objects.filter(plan=plan).values_list("dingtalk_user_id", flat=True))
    assert inbox_counts(sim, userids) == Counter({1: 250})
    assert not Delivery.objects.filter(plan=plan, state=DeliveryState.FORBIDDEN).exists()


@pytest.mark.django_db
def test_a_dropped_batch_with_nobody_unread_is_settled(sim, wsd) -> None:
    sim.sim.set_limits(recipients_per_minute=150, same_content_once_per_day=False)
    make_recipients(wsd, 200, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(django_settings.DELIVERY_LIMITS, "recipients_per_minute", 10_000)
        planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    second = Batch.objects.get(dispatch__plan=plan, seq=1)
    sim.sim.advance(60)
    for userid in second.userids[:50]:
        sim.sim.mark_read(second.task_id, userid)
    Batch.objects.filter(pk=second.pk).update(next_poll_at=timezone.now())
    assert receipts.batch_poll_receipts(second.pk) == "done"
    second.refresh_from_db()
    assert second.drops_requeued
    assert second.receipts_done


@pytest.mark.django_db
def test_wrong_credentials_pause_with_a_reason_and_resume_sends_nothing_twice(sim, wsd) -> None:
    make_recipients(wsd, 150, languages=("en",))
    good_ref = wsd.dingtalk_secret_ref
    wsd.dingtalk_secret_ref = "env:DELIVERY_TEST_SECRET_ABSENT"
    wsd.save()
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    notice.refresh_from_db()
    assert plan.status == PlanStatus.PAUSED
    assert notice.status == Status.PAUSED
    assert "DELIVERY_TEST_SECRET_ABSENT" in plan.pause_reason
    assert sweeper.sweep()["resumed"] == 0
    wsd.dingtalk_secret_ref = good_ref
    wsd.save()
    lifecycle.plan_resume(actor=None, plan_id=plan.pk)
    lifecycle.plan_resume(actor=None, plan_id=plan.pk)  # twice: no-op
    plan.refresh_from_db()
    assert plan.status == PlanStatus.DONE
    userids = list(Delivery.objects.filter(plan=plan).values_list("dingtalk_user_id", flat=True))
    assert inbox_counts(sim, userids) == Counter({1: 150})


@pytest.mark.django_db
def test_an_unknown_outcome_is_reconciled_without_a_second_delivery(sim, wsd, settings) -> None:
    settings.DELIVERY_CLAIM_STALE_S = 0
    settings.DELIVERY_QUEUED_STALE_S = 0
    make_recipients(wsd, 60, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    sim.sim.set_faults(timeout_hold_s=1.0)
    sim.sim.inject("asyncsend_v2", "timeout")
    from accounts.channel import client_for_department

    client = client_for_department(wsd)
    old = client.timeout
    client.timeout = (1.0, 0.3)
    try:
        planner.plan_notice(notice.pk)
    finally:
        client.timeout = old
    batch = Batch.objects.get(dispatch__plan__notice=notice)
    assert batch.status == BatchStatus.UNKNOWN
    counts = sweeper.sweep()
    assert counts["resent"] == 1
    assert sweeper.sweep()["resent"] == 0  # ran twice
    batch.refresh_from_db()
    assert batch.status == BatchStatus.ACCEPTED
    assert batch.after_unknown
    sim.sim.advance(60)
    Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
    receipts.batch_poll_receipts(batch.pk)
    assert not Delivery.objects.filter(plan__notice=notice, state=DeliveryState.FORBIDDEN).exists()
    assert inbox_counts(sim, batch.userids) == Counter({1: 60})


@pytest.mark.django_db
def test_a_citywide_broadcast_uses_one_organisation_wide_call(sim, wsd, settings) -> None:
    settings.DELIVERY_SNAPSHOT_FIRST_CHUNK = 50
    settings.DELIVERY_SNAPSHOT_CHUNK = 100
    make_recipients(wsd, 400)
    members = count_directory(wsd, sim)  # what to_all_user reaches: needed before it is chosen
    notice = make_notice(wsd, tier=Tier.CITYWIDE)
    enqueue.plan_notice(notice.pk, urgent=notice.is_urgent)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.strategy == "org_wide"
    assert (plan.reach, plan.reach_scope) == (members, "organisation")
    assert members == 400  # the simulated directory (also 400 people)
    batch = Batch.objects.get(dispatch__plan=plan)
    assert batch.to_all
    assert batch.status == BatchStatus.ACCEPTED
    assert Delivery.objects.filter(effective_state_in(ACCEPTED), plan=plan).count() == 400
    assert sim.sim.counters()["calls"]["asyncsend_v2"] == 1
    notice.refresh_from_db()
    assert notice.status == Status.SENT


@pytest.mark.django_db
def test_a_scheduled_notice_waits_for_the_sweeper(sim, wsd) -> None:
    from datetime import timedelta

    make_recipients(wsd, 10)
    notice = make_notice(wsd, tier=Tier.TARGETED, status=Status.SCHEDULED)
    Notice.objects.filter(pk=notice.pk).update(send_at=timezone.now() + timedelta(hours=1))
    assert planner.plan_notice(notice.pk) == 0
    assert not DeliveryPlan.objects.filter(notice=notice).exists()
    Notice.objects.filter(pk=notice.pk).update(send_at=timezone.now() - timedelta(seconds=1))
    seal_approved(Notice.objects.get(pk=notice.pk))  # approved with the schedule it now has
    assert sweeper.sweep()["planned"] == 1
    assert DeliveryPlan.objects.get(notice=notice).status == PlanStatus.DONE


@pytest.mark.django_db
def test_people_at_the_daily_cap_are_recorded_not_sent(sim, wsd, settings) -> None:
    settings.DELIVERY_LIMITS = {**settings.DELIVERY_LIMITS, "per_person_daily": 1}
    make_recipients(wsd, 20, languages=("en",))
    first = make_notice(wsd, tier=Tier.TARGETED, title="First")
    planner.plan_notice(first.pk)
    second = make_notice(wsd, tier=Tier.TARGETED, title="Second")
    planner.plan_notice(second.pk)
    plan = DeliveryPlan.objects.get(notice=second)
    assert Delivery.objects.filter(plan=plan, state=DeliveryState.FORBIDDEN).count() == 20
    assert not Batch.objects.filter(dispatch__plan=plan).exists()
    assert plan.status == PlanStatus.DONE


@pytest.mark.django_db
def test_receipt_polls_follow_a_sped_up_simulator_clock(sim, wsd, settings) -> None:
    settings.DELIVERY_GOVERNOR_TIME_SCALE = 60.0  # a simulated minute per real second
    make_recipients(wsd, 30, languages=("en",))
    # A targeted notice keeps DingTalk's schedule (a small closed-loop one polls sooner).
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    batch = Batch.objects.get(dispatch__plan__notice=notice)
    # The schedule's first poll is one simulated minute after acceptance.
    assert (batch.next_poll_at - batch.accepted_at).total_seconds() == pytest.approx(1.0)
    sim.sim.advance(60)
    Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
    assert receipts.batch_poll_receipts(batch.pk) == "polled"
    batch.refresh_from_db()
    # The second poll is three simulated minutes after acceptance.
    assert (batch.next_poll_at - batch.accepted_at).total_seconds() == pytest.approx(3.0)


@pytest.mark.django_db
def test_a_send_group_stops_at_a_long_governor_wait_and_gives_the_rest_back(
    sim, wsd, settings
) -> None:
    settings.DELIVERY_LIMITS = {**settings.DELIVERY_LIMITS, "recipients_per_minute": 250}
    make_recipients(wsd, 400, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)  # eager: the first group sends what the minute allows
    batches = Batch.objects.filter(dispatch__plan__notice=notice)
    assert batches.filter(status=BatchStatus.ACCEPTED).count() == 2
    held = list(batches.filter(status=BatchStatus.QUEUED).values_list("pk", flat=True))
    assert len(held) == 2  # given back queued, not claimed: the retry (or sweeper) sends them
    report = sender.batches_send(held, inline_wait_s=0)
    assert report.sent == 0
    assert sorted(report.retry) == sorted(held)
    assert report.retry_in > 2  # the minute's window, not a busy loop
    assert sim.sim.counters()["calls"]["asyncsend_v2"] == 2


@pytest.mark.skipif(
    "postgres" not in os.environ.get("DATABASE_URL", ""),
    reason="ANALYZE and the planner's statistics are PostgreSQL's",
)
@pytest.mark.django_db
def test_a_large_snapshot_refreshes_the_planners_statistics(sim, wsd, settings) -> None:
    from django.db import connection

    def estimated_rows() -> float:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'delivery_delivery'")
            return float(cursor.fetchone()[0])

    settings.DELIVERY_ANALYZE_AFTER = 200
    small = make_notice(wsd, tier=Tier.TARGETED, title="Small")
    make_recipients(wsd, 100)
    tasks.plan_notice_task.delay(small.pk)
    assert estimated_rows() != 100  # below the threshold: no ANALYZE
    make_recipients(wsd, 250, start=100)
    large = make_notice(wsd, tier=Tier.TARGETED, title="Large")
    tasks.plan_notice_task.delay(large.pk)
    assert Delivery.objects.count() == 100 + 350
    assert estimated_rows() == 100 + 350


def test_a_send_task_takes_about_a_seconds_calls(settings) -> None:
    settings.DELIVERY_SEND_GROUP = 50
    # DingTalk's own limits: 18 calls a second, 49 calls of 100 people a minute.
    settings.DELIVERY_LIMITS = {
        **settings.DELIVERY_LIMITS,
        "calls_per_second": 18,
        "recipients_per_minute": 4_900,
    }
    assert enqueue.send_group_size() == 20
    # Generous limits: the configured ceiling.
    settings.DELIVERY_LIMITS = {
        **settings.DELIVERY_LIMITS,
        "calls_per_second": 1_000_000,
        "recipients_per_minute": 1_000_000_000,
    }
    assert enqueue.send_group_size() == 50
    settings.DELIVERY_SEND_GROUP = 5
    assert enqueue.send_group_size() == 5


@pytest.mark.django_db
def test_every_persons_row_points_at_the_batch_that_carries_them(sim, wsd, settings) -> None:
    # Several chunks of three languages: each chunk's people are joined to their batches by
    # language and rank (PostgreSQL's snapshot) or in Python (elsewhere).
    settings.DELIVERY_SNAPSHOT_FIRST_CHUNK = 40
    settings.DELIVERY_SNAPSHOT_CHUNK = 130
    make_recipients(wsd, 350)
    notice = make_notice(wsd, tier=Tier.TARGETED)
    plan = planner.plan_start(notice.pk)
    assert plan is not None
    finished = False
    while not finished:
        _, finished = planner.plan_snapshot_chunk(plan.pk)
    batches = {b.pk: b for b in Batch.objects.filter(dispatch__plan=plan)}
    rows: dict[int, set[str]] = {}
    for batch_id, dispatch_id, userid in Delivery.objects.filter(plan=plan).values_list(
        "batch_id", "dispatch_id", "dingtalk_user_id"
    ):
        assert batches[batch_id].dispatch_id == dispatch_id
        rows.setdefault(batch_id, set()).add(userid)
    assert sum(len(people) for people in rows.values()) == 350
    assert {pk: set(b.userids) for pk, b in batches.items()} == rows
    # One number per batch of each message.
    assert len({(b.dispatch_id, b.seq) for b in batches.values()}) == len(batches)
