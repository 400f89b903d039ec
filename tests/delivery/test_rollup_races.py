"""Concurrent writers of one plan on PostgreSQL: the rollups never drift, whichever commits first.

A person still queued in a batch counts as accepted once the batch is (rollup_sql's effective
state), so a statement that moves people out of "queued" and the acceptance of their batch each
count from what the other changes. Each test holds one transaction open after its statements,
runs the other against it, then commits, and checks the rollups against a recount
(plan_drift) and the people's states against what DingTalk did. The last test is the same race
between a receipt poll and the outreach list (an UPDATE that must check each row's state again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from accounts.models import Department
from audit.models import AuditEvent
from common.errors import ApplicationError
from delivery import messages
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    OutreachStatus,
)
from delivery.rollups import plan_drift, plan_rollup
from delivery.services import followup, planner, receipts
from delivery.services.outcomes import record_accepted_many
from delivery.testing import connect_demo_app, make_notice, make_recipients, stopped_clock_simulator
from notices.models import Notice, Tier

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WAIT_S = 20.0


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "two transactions writing at once need PostgreSQL: SQLite lets one writer in at a "
            "time, so these interleavings cannot happen there"
        )


@pytest.fixture
def sim(settings: Any) -> Iterator[Any]:
    with stopped_clock_simulator(settings, directory_size=200, readers={"enabled": False}) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a: Any, sim: Any) -> Department:
    return connect_demo_app(cast_a.department, sim, "WSD")


class Held:
    """Work run in its own thread and connection; with ``hold``, its transaction stays open
    after the work until ``release`` (the other side then runs against it)."""

    def __init__(self, work: Callable[[], object], *, hold: bool = False) -> None:
        self.work = work
        self.hold = hold
        self.done_work = threading.Event()
        self.go = threading.Event()
        self.pid = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = int(cursor.fetchone()[0])
            if self.hold:
                with transaction.atomic():
                    self.work()
                    self.done_work.set()
                    assert self.go.wait(WAIT_S), "never released"
            else:
                self.work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc
        finally:
            self.done_work.set()
            connections.close_all()

    def finished_or_waiting(self) -> str:
        """Wait until the work is done or its connection waits for a lock: which one."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.done_work.is_set():
                return "finished"
            if self.pid:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [self.pid]
                    )
                    row = cursor.fetchone()
                if row and row[0] == "Lock":
                    return "waiting"
            time.sleep(0.01)
        raise AssertionError("neither finished nor waiting for a lock")

    def release(self) -> None:
        self.go.set()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def _race(first: Callable[[], object], second: Callable[[], object]) -> str:
    """``first`` runs and holds its transaction; ``second`` runs against it; then both commit.

    Returns whether ``second`` finished before ``first`` committed, or waited for it.
    """
    held = Held(first, hold=True)
    assert held.done_work.wait(WAIT_S)
    if held.error is not None:
        held.release()  # raises it
    other = Held(second)
    seen = other.finished_or_waiting()
    held.release()
    other.release()
    return seen


def _in_flight_plan(wsd: Department) -> tuple[DeliveryPlan, Batch, int]:
    """150 people sent in two batches; the second is claimed again, its call on its way."""
    make_recipients(wsd, 150, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    first, second = Batch.objects.filter(dispatch__plan=plan).order_by("seq")
    assert first.status == second.status == BatchStatus.ACCEPTED
    task_id = second.task_id
    assert task_id is not None
    Batch.objects.filter(pk=second.pk).update(
        status=BatchStatus.CLAIMED,
        task_id=None,
        accepted_at=None,
        next_poll_at=None,
        claimed_at=timezone.now(),
    )
    assert plan_drift(plan.pk) == {}
    assert plan_rollup(plan.pk).states == {DeliveryState.ACCEPTED: 100, DeliveryState.QUEUED: 50}
    return plan, Batch.objects.get(pk=second.pk), task_id


def _accept(batch_id: int, task_id: int) -> Callable[[], object]:
    def work() -> None:
        batch = Batch.objects.select_related(
            "dispatch__plan__notice", "dispatch__plan__department"
        ).get(pk=batch_id)
        record_accepted_many([(batch, task_id)])

    return work


def _recall(plan: DeliveryPlan, actor: Any) -> Callable[[], object]:
    def work() -> None:
        notice = Notice.objects.get(pk=plan.notice_id)
        followup.notice_recall(actor=actor, notice=notice, reason="Wrong district")

    return work


def _states(plan: DeliveryPlan) -> dict[str, int]:
    states: dict[str, int] = {}
    for person in Delivery.objects.filter(plan=plan).select_related("batch"):
        state = person.state
        if state == DeliveryState.QUEUED and person.batch.status == BatchStatus.ACCEPTED:
            state = DeliveryState.ACCEPTED
        states[state] = states.get(state, 0) + 1
    return states


def test_an_acceptance_committed_during_a_recall_keeps_its_people_accepted(wsd, cast_a) -> None:
    # The acceptance is written (not yet committed) when the recall runs: the recall must not
    # count the batch's people as cancelled while the acceptance counts them as accepted.
    plan, batch, task_id = _in_flight_plan(wsd)
    _race(_accept(batch.pk, task_id), _recall(plan, cast_a.supervisor))
    batch.refresh_from_db()
    assert batch.status == BatchStatus.ACCEPTED
    assert plan_drift(plan.pk) == {}
    # DingTalk accepted the call before the recall: its 50 people had the notice.
    assert _states(plan) == {DeliveryState.ACCEPTED: 150}
    assert plan_rollup(plan.pk).states == {DeliveryState.ACCEPTED: 150}


def test_an_acceptance_during_a_recall_moves_none_of_the_cancelled_people(wsd, cast_a) -> None:
    # The recall is written (not yet committed) when the acceptance runs.
    plan, batch, task_id = _in_flight_plan(wsd)
    _race(_recall(plan, cast_a.supervisor), _accept(batch.pk, task_id))
    batch.refresh_from_db()
    assert batch.status == BatchStatus.ACCEPTED
    assert plan_drift(plan.pk) == {}
    expected = {DeliveryState.ACCEPTED: 100, DeliveryState.CANCELLED: 50}
    assert _states(plan) == expected
    assert plan_rollup(plan.pk).states == expected


def _confirm(person: Delivery) -> Callable[[], object]:
    def work() -> None:
        followup.delivery_confirm(token=messages.confirm_token(person.pk))

    return work


@pytest.mark.parametrize("confirm_first", [True, False], ids=["confirm-first", "accept-first"])
def test_a_confirmation_racing_its_batchs_acceptance_is_counted_once(
    wsd, confirm_first: bool
) -> None:
    # DingTalk delivers as soon as it accepts the call: a person can open their link and
    # confirm before the sender has written the acceptance.
    plan, batch, task_id = _in_flight_plan(wsd)
    person = Delivery.objects.filter(plan=plan, batch=batch).order_by("pk").first()
    assert person is not None
    if confirm_first:
        _race(_confirm(person), _accept(batch.pk, task_id))
    else:
        _race(_accept(batch.pk, task_id), _confirm(person))
    person.refresh_from_db()
    assert person.confirmed_at is not None
    assert plan_drift(plan.pk) == {}
    expected = {DeliveryState.ACCEPTED: 149, DeliveryState.READ: 1}
    assert _states(plan) == expected
    assert plan_rollup(plan.pk).states == expected
    assert plan_rollup(plan.pk).confirmed == 1


def test_a_confirmation_waiting_for_a_recall_records_nothing(wsd, cast_a) -> None:
    # The person's link was checked before the recall committed; the recall holds their batch
    # (its call on its way), so the confirmation waits, then finds the notice withdrawn.
    plan, batch, _task_id = _in_flight_plan(wsd)
    person = Delivery.objects.filter(plan=plan, batch=batch).order_by("pk").first()
    assert person is not None
    refused: list[str] = []

    def confirm() -> None:
        try:
            followup.delivery_confirm(token=messages.confirm_token(person.pk))
        except ApplicationError as exc:
            refused.append(exc.code)

    assert _race(_recall(plan, cast_a.supervisor), confirm) == "waiting"
    assert refused == ["recalled"]
    person.refresh_from_db()
    assert (person.state, person.confirmed_at) == (DeliveryState.CANCELLED, None)
    assert not AuditEvent.objects.filter(action="delivery.confirmed").exists()
    assert plan_drift(plan.pk) == {}


def test_people_a_poll_finds_read_while_the_outreach_list_is_drawn_stay_off_it(wsd, sim) -> None:
    # The poll's reads are written (not yet committed) when the last reminder round lists the
    # silent for staff: the list waits for them and leaves the 40 readers out.
    make_recipients(wsd, 150, languages=("en",))
    notice = make_notice(
        wsd, tier=Tier.CLOSED_LOOP, max_reminders=1, remind_after_minutes=30, remind_whom="unread"
    )
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    first = Batch.objects.filter(dispatch__plan=plan, dispatch__round=0).order_by("seq").first()
    assert first is not None
    assert first.task_id is not None
    due = timezone.now() + timedelta(minutes=31)
    assert followup.reminders_due_send(now=due) > 0  # the one reminder round
    sim.sim.advance(120)
    for userid in first.userids[:40]:
        sim.sim.mark_read(first.task_id, userid)
    Batch.objects.filter(pk=first.pk).update(next_poll_at=timezone.now())

    def poll() -> None:
        assert receipts.batch_poll_receipts(first.pk) == "polled"

    def list_the_silent() -> None:
        followup.plan_send_reminder(plan.pk, now=due + timedelta(minutes=31))

    _race(poll, list_the_silent)
    assert plan_drift(plan.pk) == {}
    listed = Delivery.objects.filter(plan=plan, outreach=OutreachStatus.OPEN)
    assert not listed.filter(first_read_at__isnull=False).exists()
    assert listed.count() == 110
    assert plan_rollup(plan.pk).outreach_open == 110
