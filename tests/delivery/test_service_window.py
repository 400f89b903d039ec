"""Followers through the Service Window against the simulator: a citywide notice in one call and
its recall, a swept batch resent with the same uuid delivered once, an audience of members and
followers split by channel with the right figures, and the task run twice sending once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audiences.models import (
    DirectorySettings,
    Recipient,
    RecipientChannel,
    Segment,
    SegmentChannel,
    SubscriptionSource,
)
from audit.models import AuditEvent
from delivery import tasks
from delivery.channels import channel_figures, preflight_channels
from delivery.models import BatchStatus, Delivery, DeliveryPlan, ServiceWindowBatch
from delivery.services import followup, sweeper
from delivery.testing import connect_demo_app, make_notice, make_recipients, stopped_clock_simulator
from notices.models import Tier

APP = "ding-demo-wsd"
FOLLOWERS = [f"fan-wsd-{i:04d}" for i in range(1, 21)]


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=200) as dt:
        dt.sim.set_limits(same_content_once_per_day=False)  # only the uuid may stop a repeat
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    department = connect_demo_app(cast_a.department, sim, "WSD")
    DirectorySettings.objects.create(department=department, service_account_id="sa-wsd")
    now = timezone.now()
    Recipient.objects.bulk_create(
        Recipient(
            department=department,
            dingtalk_user_id=userid,
            channel=RecipientChannel.FOLLOWER,
            subscription_source=SubscriptionSource.FOLLOW_EVENT,
            subscription_changed_at=now,
        )
        for userid in FOLLOWERS
    )
    return department


def inbox_counts(sim, userids):
    sim.sim.advance(5)
    return Counter(len([m for m in sim.sim.inbox(u, APP) if not m["recalled"]]) for u in userids)


@pytest.mark.django_db
def test_citywide_reaches_followers_in_one_call_and_is_recalled(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 30)
    notice = make_notice(wsd, tier=Tier.CITYWIDE, title="Red rainstorm")
    tasks.plan_notice_task.delay(notice.pk)
    tasks.plan_notice_task.delay(notice.pk)  # ran twice
    batch = ServiceWindowBatch.objects.get(plan__notice=notice)
    assert batch.to_all
    assert batch.status == BatchStatus.ACCEPTED
    assert batch.size == 20
    assert tasks.send_service_window_task.delay(batch.pk).get() == "skipped"  # ran twice
    assert sim.sim.counters()["calls"]["follow_message_send"] == 1
    assert inbox_counts(sim, FOLLOWERS) == Counter({1: 20})
    # Members went by work notification only; no follower has a per-person row.
    assert Delivery.objects.filter(plan__notice=notice).count() == 30
    figures = channel_figures(DeliveryPlan.objects.get(notice=notice))["service_window"]
    assert (figures["sent"], figures["calls"], figures["recalled"]) == (20, 1, 0)

    plan = followup.notice_recall(actor=cast_a.supervisor, notice=notice, reason="Lifted")
    followup.plan_recall_calls(plan.pk)
    followup.plan_recall_calls(plan.pk)  # ran twice
    assert sim.sim.counters()["calls"]["mass_recall"] == 1
    assert sim.sim.task(int(ServiceWindowBatch.objects.get(pk=batch.pk).task_id)).recalled_at
    assert inbox_counts(sim, FOLLOWERS) == Counter({0: 20})
    assert channel_figures(plan)["service_window"]["recalled"] == 20
    actions = set(
        AuditEvent.objects.filter(target_id=str(notice.pk)).values_list("action", flat=True)
    )
    assert {"delivery.sw_batch_accepted", "delivery.sw_recalled"} <= actions


@pytest.mark.django_db
def test_a_swept_batch_resent_with_the_same_uuid_is_not_delivered_twice(sim, wsd) -> None:
    notice = make_notice(wsd, tier=Tier.CITYWIDE)
    tasks.plan_notice_task.delay(notice.pk)
    batch = ServiceWindowBatch.objects.get(plan__notice=notice)
    first_task = batch.task_id
    # As if the worker died after DingTalk accepted the call but before writing it down.
    ServiceWindowBatch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.CLAIMED,
        task_id="",
        claimed_at=timezone.now() - timedelta(hours=1),
    )
    counts = sweeper.sweep()
    assert counts["service_window"] == 1
    batch.refresh_from_db()
    assert batch.status == BatchStatus.ACCEPTED
    assert batch.error_code == "uuid_repeat"
    assert batch.task_id == first_task  # found again in the send records by its uuid
    assert batch.attempts == 2
    assert sim.sim.counters()["calls"]["follow_message_send"] == 2
    assert inbox_counts(sim, FOLLOWERS) == Counter({1: 20})
    events = AuditEvent.objects.filter(action="delivery.sw_batch_accepted").order_by("pk")
    assert [e.data["uuid_repeat"] for e in events] == [False, True]


@pytest.mark.django_db
def test_members_and_followers_are_split_by_channel(sim, wsd, cast_a, verified_client) -> None:
    make_recipients(wsd, 130)
    segment = Segment.objects.create(department=wsd, name="All", channel=SegmentChannel.BOTH)
    notice = make_notice(wsd, tier=Tier.TARGETED)
    notice.segments.set([segment])
    from notices.testing import seal_approved

    seal_approved(notice)
    split = preflight_channels(
        wsd, Tier.TARGETED, [segment], requires_confirmation=True, kind="voice"
    )
    assert (split.members, split.followers, split.service_window) == (130, 20, True)
    text = " ".join(split.lines)
    assert "130 organisation members" in text
    assert "20 followers in 1 calls" in text
    assert "Followers cannot confirm" in text
    assert "no voice or file message" in text
    tasks.plan_notice_task.delay(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.planned == 130  # work notifications: members only
    batch = ServiceWindowBatch.objects.get(plan=plan)
    assert not batch.to_all
    assert sorted(batch.userids) == FOLLOWERS
    assert inbox_counts(sim, FOLLOWERS) == Counter({1: 20})
    assert channel_figures(plan)["service_window"]["sent"] == 20
    # The dashboard and the receipt report show each channel and what it cannot report.
    for url in (f"/delivery/notices/{notice.pk}/", reverse("receipts:report", args=[notice.pk])):
        user = cast_a.pr_officer if url.startswith("/delivery") else cast_a.auditor
        html = verified_client(user).get(url).content.decode()
        assert 'id="channel-service-window"' in html, url
        assert "20 sent, 0 waiting, 0 failed, 0 recalled (1 calls)" in html
        assert "who read it, confirmations" in html


@pytest.mark.django_db
def test_without_a_service_window_account_followers_are_named_and_skipped(sim, wsd) -> None:
    DirectorySettings.objects.filter(department=wsd).update(service_account_id="")
    split = preflight_channels(wsd, Tier.CITYWIDE, [], requires_confirmation=False, kind="text")
    assert split.followers == 20
    assert "will not be reached" in " ".join(split.lines)
    notice = make_notice(wsd, tier=Tier.CITYWIDE)
    tasks.plan_notice_task.delay(notice.pk)
    assert not ServiceWindowBatch.objects.filter(plan__notice=notice).exists()


@pytest.mark.django_db
def test_a_plan_is_not_over_while_its_service_window_send_is_open(sim, wsd) -> None:
    from delivery.models import PlanStatus
    from delivery.services.lifecycle import plan_finish_if_complete

    notice = make_notice(wsd, tier=Tier.CITYWIDE)
    tasks.plan_notice_task.delay(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    batch = ServiceWindowBatch.objects.get(plan=plan)
    # Its Service Window send still open (as if queued behind the governor): not over.
    DeliveryPlan.objects.filter(pk=plan.pk).update(status=PlanStatus.SENDING, finished_at=None)
    ServiceWindowBatch.objects.filter(pk=batch.pk).update(status=BatchStatus.QUEUED)
    assert not plan_finish_if_complete(plan.pk)
    # Accepted: the next sweep finishes the plan.
    ServiceWindowBatch.objects.filter(pk=batch.pk).update(status=BatchStatus.ACCEPTED)
    assert plan_finish_if_complete(plan.pk)
    assert DeliveryPlan.objects.get(pk=plan.pk).status == PlanStatus.DONE
