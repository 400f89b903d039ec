"""Sends with an unknown outcome: resent only inside DingTalk's same-day window, else held."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from delivery.models import Batch, BatchStatus, Delivery, DeliveryPlan, DeliveryState
from delivery.services import planner, receipts, sender, sweeper, uncertain
from delivery.services.outcomes import mark_unknown
from delivery.testing import (
    connect_demo_app,
    make_notice,
    make_recipients,
    stopped_clock_simulator,
)
from notices.models import Tier

SHANGHAI = uncertain.DINGTALK_DAY_ZONE


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=400) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    return connect_demo_app(cast_a.department, sim, "WSD")


def inbox_counts(sim, userids):
    sim.sim.advance(5)
    return Counter(len(sim.sim.inbox(u, "ding-demo-wsd")) for u in userids)


def sent_then_answer_lost(wsd, count: int = 200) -> tuple[DeliveryPlan, Batch]:
    """A notice sent; the first batch's answer is then lost, as a read timeout loses it."""
    make_recipients(wsd, count, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    batch = Batch.objects.filter(dispatch__plan=plan).order_by("seq").first()
    assert batch is not None
    Batch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.CLAIMED, task_id=None, accepted_at=None, next_poll_at=None
    )
    mark_unknown(batch.pk, "read timeout calling asyncsend_v2")
    batch.refresh_from_db()
    return plan, batch


def test_the_dingtalk_day_is_shanghai_s() -> None:
    evening = datetime(2026, 3, 1, 15, 59, tzinfo=SHANGHAI).astimezone(SHANGHAI)
    just_after_midnight = datetime(2026, 3, 2, 0, 0, 30, tzinfo=SHANGHAI)
    assert uncertain.resend_covered(evening, evening + timedelta(hours=7))
    assert not uncertain.resend_covered(evening.replace(hour=23, minute=59), just_after_midnight)
    assert not uncertain.resend_covered(None, just_after_midnight)


@pytest.mark.django_db
def test_an_unknown_batch_of_the_same_day_is_resent_and_duplicates_count_as_received(
    sim, wsd
) -> None:
    plan, batch = sent_then_answer_lost(wsd)
    assert batch.uncertain_since is not None
    moment = batch.uncertain_since + timedelta(seconds=30)
    assert uncertain.resend_covered(batch.uncertain_since, moment)
    counts = sweeper.sweep(now=moment)
    assert counts["resent"] == 1
    assert counts["held"] == 0
    batch.refresh_from_db()
    assert batch.status == BatchStatus.ACCEPTED
    assert batch.after_unknown
    sim.sim.advance(60)
    Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
    receipts.batch_poll_receipts(batch.pk)
    # DingTalk dropped the second copy (143106): those people have the notice.
    people = Delivery.objects.filter(plan=plan, dingtalk_user_id__in=batch.userids)
    assert set(people.values_list("state", flat=True)) == {DeliveryState.UNREAD}
    userids = list(Delivery.objects.filter(plan=plan).values_list("dingtalk_user_id", flat=True))
    assert inbox_counts(sim, userids) == Counter({1: 200})


@pytest.mark.django_db
def test_an_unknown_batch_after_dingtalk_s_day_changed_is_held_not_resent(sim, wsd) -> None:
    sim.sim.set_limits(same_content_once_per_day=False)
    plan, batch = sent_then_answer_lost(wsd)
    first = batch.uncertain_since.astimezone(SHANGHAI)
    next_day = (first + timedelta(days=1)).replace(hour=0, minute=0, second=5)
    counts = sweeper.sweep(now=next_day)
    assert counts["resent"] == 0
    assert counts["held"] == 1
    # Ran twice: still held once, audited once.
    sweeper.sweep(now=next_day)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.HELD
    assert AuditEvent.objects.filter(action="delivery.batch_held").count() == 1
    userids = list(Delivery.objects.filter(plan=plan).values_list("dingtalk_user_id", flat=True))
    assert inbox_counts(sim, userids) == Counter({1: 200})
    plan.refresh_from_db()
    assert plan.status == "done"


@pytest.mark.django_db
def test_a_resend_whose_day_changed_in_the_queue_is_held_by_the_sender(sim, wsd) -> None:
    sim.sim.set_limits(same_content_once_per_day=False)
    plan, batch = sent_then_answer_lost(wsd)
    yesterday = timezone.now() - timedelta(days=1, hours=1)
    Batch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.QUEUED, after_unknown=True, uncertain_since=yesterday
    )
    assert sender.batch_send(batch.pk).outcome == "unknown"
    batch.refresh_from_db()
    assert batch.status == BatchStatus.HELD
    userids = list(Delivery.objects.filter(plan=plan).values_list("dingtalk_user_id", flat=True))
    assert inbox_counts(sim, userids) == Counter({1: 200})


@pytest.mark.django_db
def test_a_batch_whose_task_id_is_known_is_never_sent_again(sim, wsd) -> None:
    sim.sim.set_limits(same_content_once_per_day=False)
    make_recipients(wsd, 100, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    batch = Batch.objects.get(dispatch__plan__notice=notice)
    task_id = batch.task_id
    # The task id was written, but the batch went back to the queue (a sweep racing a
    # late write): the sender records it as sent instead of calling DingTalk.
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.QUEUED, accepted_at=None)
    assert sender.batch_send(batch.pk).outcome == "sent"
    batch.refresh_from_db()
    assert batch.status == BatchStatus.ACCEPTED
    assert batch.task_id == task_id
    assert inbox_counts(sim, batch.userids) == Counter({1: 100})


@pytest.mark.django_db
def test_a_supervisor_sends_a_held_batch_again_or_closes_it(
    sim, wsd, cast_a, verified_client
) -> None:
    sim.sim.set_limits(same_content_once_per_day=False)
    plan, batch = sent_then_answer_lost(wsd, count=300)
    second = Batch.objects.filter(dispatch__plan=plan).order_by("seq")[1]
    Batch.objects.filter(pk=second.pk).update(
        status=BatchStatus.UNKNOWN, task_id=None, uncertain_since=batch.uncertain_since
    )
    sweeper.sweep(now=batch.uncertain_since + timedelta(days=1))
    assert Batch.objects.filter(dispatch__plan=plan, status=BatchStatus.HELD).count() == 2
    url = f"/delivery/notices/{plan.notice_id}/"
    officer = verified_client(cast_a.pr_officer)
    page = officer.get(url)
    assert 'id="delivery-held"' in page.content.decode()
    assert "held/" not in page.content.decode()  # no decision buttons for an officer
    assert officer.post(f"{url}held/{batch.pk}/resend/").status_code == 404
    supervisor = verified_client(cast_a.supervisor)
    assert f"held/{batch.pk}/resend/" in supervisor.get(url).content.decode()
    assert supervisor.post(f"{url}held/{batch.pk}/resend/").status_code == 302
    assert supervisor.post(f"{url}held/{second.pk}/close/").status_code == 302
    # Ran twice: the second decision finds nothing held.
    assert supervisor.post(f"{url}held/{second.pk}/close/").status_code == 302
    batch.refresh_from_db()
    second.refresh_from_db()
    assert batch.status == BatchStatus.ACCEPTED
    assert second.status == BatchStatus.CLOSED
    assert set(
        Delivery.objects.filter(plan=plan, batch=second).values_list("state", flat=True)
    ) == {DeliveryState.UNKNOWN}
    actions = Counter(
        AuditEvent.objects.filter(action__startswith="delivery.batch_held").values_list(
            "action", flat=True
        )
    )
    assert actions == Counter(
        {
            "delivery.batch_held": 2,
            "delivery.batch_held_resent": 1,
            "delivery.batch_held_closed": 1,
        }
    )
    # The supervisor chose to send again: those people have it twice; nobody else does.
    assert inbox_counts(sim, batch.userids) == Counter({2: 100})
    assert inbox_counts(sim, second.userids) == Counter({1: 100})
    assert supervisor.post(f"{url}held/99999/close/").status_code == 302
