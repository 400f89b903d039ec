"""Per-plan rollups (delivery.rollups): equal to a recount from the people after every kind of
state change, read by every page, checked and repaired by the command and the sweeper.

The recount here is written with the ORM, independently of the triggers' SQL.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audiences.models import Recipient
from audiences.services import recipient_erase
from delivery import messages, rollup_sql, tasks
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    OutreachStatus,
    PlanTally,
    effective_state,
)
from delivery.receipt_report import confirmed_count, state_counts
from delivery.rollups import compact, plan_drift, plan_rollup
from delivery.selectors import department_summary, plan_figures
from delivery.services import followup, planner, receipts, rollup_check
from delivery.testing import connect_demo_app, make_notice, make_recipients, stopped_clock_simulator
from notices.models import Tier

FAILED = (DeliveryState.FAILED, DeliveryState.INVALID, DeliveryState.FORBIDDEN)


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=400, readers={"enabled": False}) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    return connect_demo_app(cast_a.department, sim, "WSD")


def recount(plan: DeliveryPlan) -> dict[str, object]:
    people = Delivery.objects.filter(plan=plan)
    states = Counter(people.annotate(now=effective_state()).values_list("now", flat=True))
    return {
        "states": dict(states),
        "read": people.filter(first_read_at__isnull=False).count(),
        "confirmed": people.filter(confirmed_at__isnull=False).count(),
        "outreach_open": people.filter(outreach=OutreachStatus.OPEN).count(),
        "districts": dict(Counter(people.values_list("district_id", flat=True))),
        "district_reads": dict(
            Counter(
                people.filter(first_read_at__isnull=False).values_list("district_id", flat=True)
            )
        ),
        "failures": dict(Counter(people.filter(state__in=FAILED).values_list("state", "code"))),
    }


def from_rollup(plan: DeliveryPlan) -> dict[str, object]:
    rollup = plan_rollup(plan.pk)
    return {
        "states": rollup.states,
        "read": rollup.read,
        "confirmed": rollup.confirmed,
        "outreach_open": rollup.outreach_open,
        "districts": rollup.districts,
        "district_reads": rollup.district_reads,
        "failures": rollup.failures,
    }


def agree(plan: DeliveryPlan) -> dict[str, object]:
    """The rollups equal the recount (and the triggers' own recount finds no drift)."""
    plan.refresh_from_db()
    expected = recount(plan)
    assert from_rollup(plan) == expected
    assert plan_drift(plan.pk) == {}
    figures = plan_figures(plan)
    states = expected["states"]
    assert figures["queued"] == states.get(DeliveryState.QUEUED, 0)
    assert figures["delivered"] == sum(
        states.get(s, 0) for s in (DeliveryState.ACCEPTED, DeliveryState.READ, DeliveryState.UNREAD)
    )
    assert (figures["read"], figures["confirmed"]) == (expected["read"], expected["confirmed"])
    assert figures["outreach_open"] == expected["outreach_open"]
    return expected


def poll_all(plan: DeliveryPlan) -> None:
    for batch_id in Batch.objects.filter(
        dispatch__plan=plan, status=BatchStatus.ACCEPTED, receipts_done=False
    ).values_list("pk", flat=True):
        Batch.objects.filter(pk=batch_id).update(next_poll_at=timezone.now())
        receipts.batch_poll_receipts(batch_id)


@pytest.mark.django_db
def test_rollups_equal_a_recount_after_every_kind_of_state_change(sim, wsd, cast_a) -> None:
    # 150 a minute at the simulator, 250 people: DingTalk's flow control drops 100 of them.
    sim.sim.set_limits(recipients_per_minute=150)
    make_recipients(wsd, 250, start=10, languages=("en",))
    notice = make_notice(
        wsd,
        tier=Tier.CLOSED_LOOP,
        max_reminders=1,
        remind_after_minutes=30,
        remind_whom="unread",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(django_settings.DELIVERY_LIMITS, "recipients_per_minute", 10_000)
        planner.plan_notice(notice.pk)  # send
    plan = DeliveryPlan.objects.get(notice=notice)
    sent = agree(plan)
    assert sent["states"] == {DeliveryState.ACCEPTED: 250}

    sim.sim.advance(120)
    first = Batch.objects.filter(dispatch__plan=plan).order_by("seq").first()
    for userid in first.userids[:40]:
        sim.sim.mark_read(first.task_id, userid)
    poll_all(plan)  # receipts: reads, unread, and the flow-control drops re-sent
    polled = agree(plan)
    assert polled["read"] == 40
    assert Batch.objects.filter(dispatch__plan=plan, drops_requeued=True).exists()
    poll_all(plan)  # the re-sent people's own receipts
    agree(plan)

    later = timezone.now() + timedelta(minutes=31)
    assert followup.reminders_due_send(now=later) > 0  # reminder
    assert followup.reminders_due_send(now=later) == 0  # ran twice
    agree(plan)
    followup.reminders_due_send(now=later + timedelta(minutes=31))  # the outreach list
    listed = agree(plan)
    assert listed["outreach_open"] > 0

    person = Delivery.objects.filter(plan=plan, first_read_at__isnull=True).first()
    token = messages.confirm_token(person.pk)
    followup.delivery_confirm(token=token)  # confirmation
    followup.delivery_confirm(token=token)  # ran twice
    assert agree(plan)["confirmed"] == 1
    case = Delivery.objects.filter(plan=plan, outreach=OutreachStatus.OPEN).first()
    followup.outreach_close(actor=cast_a.pr_officer, delivery=case, outcome="Phoned, fine")
    closed = agree(plan)
    assert closed["outreach_open"] == listed["outreach_open"] - 1

    erased = Recipient.objects.get(pk=person.recipient_id)
    recipient_erase(actor=cast_a.department_admin, recipient=erased, reason="PDPO")  # erasure
    assert agree(plan) == closed  # the counts keep the erased person's state

    # The sweeper's re-drive and its sample check change nothing, twice.
    assert tasks.sweep_dispatches_task.delay().get()["rollups_repaired"] == 0
    assert tasks.sweep_dispatches_task.delay().get()["rollups_repaired"] == 0
    assert agree(plan) == closed


@pytest.mark.django_db
def test_recall_and_a_failed_batch_move_the_rollups(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 150, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    first, second = Batch.objects.filter(dispatch__plan=plan).order_by("seq")
    Batch.objects.filter(pk=second.pk).update(
        status=BatchStatus.QUEUED, task_id=None, accepted_at=None, next_poll_at=None
    )
    assert agree(plan)["states"] == {DeliveryState.ACCEPTED: 100, DeliveryState.QUEUED: 50}
    followup.notice_recall(actor=cast_a.supervisor, notice=notice, reason="Wrong district")
    assert agree(plan)["states"] == {DeliveryState.ACCEPTED: 100, DeliveryState.CANCELLED: 50}
    assert followup.plan_recall_calls(plan.pk) == 1
    assert followup.plan_recall_calls(plan.pk) == 0  # ran twice
    agree(plan)
    # Rows a later code path fails one by one (DingTalk's per-person errors) are counted too.
    ids = list(Delivery.objects.filter(plan=plan, batch=first).values_list("pk", flat=True)[:3])
    Delivery.objects.filter(pk__in=ids).update(state=DeliveryState.INVALID, code=40001)
    assert agree(plan)["failures"] == {(DeliveryState.INVALID, 40001): 3}
    assert plan_figures(plan)["failures"] == [
        {"state": DeliveryState.INVALID, "code": 40001, "count": 3}
    ]


@pytest.mark.django_db
def test_every_page_reads_the_same_figures(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 120, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    sim.sim.advance(120)
    batch = Batch.objects.filter(dispatch__plan=plan).order_by("seq").first()
    for userid in batch.userids[:30]:
        sim.sim.mark_read(batch.task_id, userid)
    poll_all(plan)
    figures = plan_figures(plan)
    summary = department_summary(wsd)
    counts = {state: n for state, _name, n in state_counts(notice)}
    assert (summary["planned"], summary["delivered"], summary["read"]) == (
        figures["planned"],
        figures["delivered"],
        figures["read"],
    )
    assert summary["confirmed"] == figures["confirmed"] == confirmed_count(notice)
    assert sum(counts.values()) == figures["planned"] == 120
    assert counts[DeliveryState.READ] == figures["read"] == 30
    assert counts[DeliveryState.UNREAD] == 90
    # The curve's table alternative ends at the read share, with its x axis in minutes.
    assert figures["curve"]["table"][-1]["read"] == 30
    assert figures["curve"]["table"][-1]["share"] == 25.0
    assert figures["curve"]["x_ticks"][0]["minute"] == 0


@pytest.mark.django_db
def test_the_dashboard_reads_no_person_rows(sim, wsd) -> None:
    make_recipients(wsd, 60, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    with CaptureQueriesContext(connection) as queries:
        plan_figures(plan)
    assert not [q for q in queries.captured_queries if rollup_sql.DELIVERY in q["sql"]]
    assert len(queries.captured_queries) <= 3


@pytest.mark.django_db
def test_deltas_fold_into_one_row_per_key_without_changing_a_figure(sim, wsd) -> None:
    make_recipients(wsd, 250, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    sim.sim.advance(120)
    poll_all(plan)
    before = recount(plan)
    rows = PlanTally.objects.filter(plan=plan).count()
    assert compact(plan.pk) > 0
    assert PlanTally.objects.filter(plan=plan).count() < rows
    assert compact(plan.pk) == 0  # ran twice: nothing more to fold
    assert agree(plan) == before


@pytest.mark.django_db
def test_the_check_reports_drift_and_repairs_it(sim, wsd) -> None:
    make_recipients(wsd, 20, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    PlanTally.objects.create(plan=plan, kind="s", key=DeliveryState.READ, n=7)  # a lost update
    assert plan_drift(plan.pk) == {("s", DeliveryState.READ): -7}
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("rollup_check", notice=[notice.pk], stdout=out)
    assert "drift found" in out.getvalue()
    call_command("rollup_check", notice=[notice.pk], fix=True, stdout=out)
    assert plan_drift(plan.pk) == {}
    call_command("rollup_check", all=True, stdout=out)  # agrees now: exit status 0
    assert "rollups agree" in out.getvalue()
    PlanTally.objects.create(plan=plan, kind="c", key="", n=2)
    checks = rollup_check.sample_check()
    assert [(c.plan_id, c.repaired) for c in checks] == [(plan.pk, True)]
    assert rollup_check.sample_check()[0].repaired is False  # ran twice
    assert plan_rollup(plan.pk).confirmed == 0


@pytest.mark.django_db
def test_send_and_poll_tasks_ran_twice_count_once(sim, wsd) -> None:
    make_recipients(wsd, 150, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)  # plan_notice and send_batches ran once, eagerly
    plan = DeliveryPlan.objects.get(notice=notice)
    ids = list(Batch.objects.filter(dispatch__plan=plan).values_list("pk", flat=True))
    sent = agree(plan)
    tasks.send_batches_task.delay(ids).get()  # ran twice
    assert agree(plan) == sent
    sim.sim.advance(120)
    batch = Batch.objects.get(pk=ids[0])
    for userid in batch.userids[:20]:
        sim.sim.mark_read(batch.task_id, userid)
    Batch.objects.filter(pk__in=ids).update(next_poll_at=timezone.now())
    assert tasks.poll_receipts_task.delay().get() == len(ids)
    polled = agree(plan)
    assert polled["read"] == 20
    for batch_id in ids:  # each poll ran twice: the lease is spent, nothing is counted again
        tasks.poll_batch_receipts_task.delay([batch_id]).get()
    assert agree(plan) == polled
