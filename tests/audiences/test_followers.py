"""Service Window followers: follow/unfollow events through the encrypted callback, the
reconciling job (failed pushes), and segments choosing followers, members or both."""

from __future__ import annotations

from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from audiences.models import (
    DirectorySettings,
    Recipient,
    RecipientChannel,
    Segment,
    SegmentChannel,
)
from audiences.selectors import segment_count
from audiences.tasks import reconcile_followers_task
from audit.models import AuditEvent
from dingtalk.simulator.testing import running_simulator
from tests.audiences.test_sync import APP_KEY, _app, _connect


def _with_service_window(cast) -> None:
    DirectorySettings.objects.filter(department=cast.department).update(service_account_id="sa-wsd")


def test_follow_and_unfollow_events_change_the_subscription(cast_a, monkeypatch, live_server):
    _connect(cast_a, monkeypatch)
    _with_service_window(cast_a)
    path = reverse("audiences:dingtalk-callback", args=["WSD"])
    with (
        running_simulator(
            apps=[_app(callback_url=live_server.url + path)], directory_size=20
        ) as dt,
        override_settings(DINGTALK_BASE_URL=dt.base_url),
    ):
        assert dt.sim.follow(APP_KEY, "citizen-1", name="Chan")["ok"]
        person = Recipient.objects.get(dingtalk_user_id="citizen-1")
        assert person.channel == RecipientChannel.FOLLOWER
        assert person.subscription_state == "subscribed"
        assert person.subscription_source == "follow_event"
        dt.sim.advance(5)
        assert dt.sim.follow(APP_KEY, "citizen-1", follow=False)["ok"]
        person.refresh_from_db()
        assert person.subscription_state == "unsubscribed"
        left_at = person.subscription_changed_at
        dt.sim.advance(5)
        assert dt.sim.follow(APP_KEY, "citizen-1")["ok"]
        person.refresh_from_db()
        assert person.subscription_state == "subscribed"
        assert person.subscription_changed_at > left_at
        assert Recipient.objects.filter(dingtalk_user_id="citizen-1").count() == 1
        assert AuditEvent.objects.filter(action="audiences.follower_changed").count() == 3


def test_reconcile_applies_missed_pushes_once(cast_a, monkeypatch):
    _connect(cast_a, monkeypatch)
    _with_service_window(cast_a)
    with (
        running_simulator(apps=[_app()], directory_size=20) as dt,
        override_settings(DINGTALK_BASE_URL=dt.base_url),
    ):
        # No callback URL: DingTalk cannot push, and keeps the events for the failed-push list.
        assert not dt.sim.follow(APP_KEY, "citizen-2")["ok"]
        dt.sim.advance(5)
        assert not dt.sim.follow(APP_KEY, "citizen-3")["ok"]
        dt.sim.advance(5)
        assert not dt.sim.follow(APP_KEY, "citizen-3", follow=False)["ok"]
        assert not Recipient.objects.filter(dingtalk_user_id__startswith="citizen").exists()
        assert reconcile_followers_task() == {"fetched": 3, "changed": 3}
        assert Recipient.objects.get(dingtalk_user_id="citizen-2").subscription_source == (
            "follow_sync"
        )
        # citizen-3 followed then left: the follow created them, the later unfollow is applied.
        three = Recipient.objects.get(dingtalk_user_id="citizen-3")
        assert three.subscription_state == "unsubscribed"
        assert reconcile_followers_task() == {"fetched": 0, "changed": 0}


def test_segments_select_followers_members_or_both(cast_a):
    dept = cast_a.department
    now = timezone.now()
    for i in range(3):
        Recipient.objects.create(
            department=dept,
            dingtalk_user_id=f"m{i}",
            subscription_source="import",
            subscription_changed_at=now,
        )
    for i in range(2):
        Recipient.objects.create(
            department=dept,
            dingtalk_user_id=f"f{i}",
            channel=RecipientChannel.FOLLOWER,
            subscription_source="follow_event",
            subscription_changed_at=now,
        )
    counts = {
        channel: segment_count(
            Segment.objects.create(department=dept, name=channel, channel=channel)
        )
        for channel in SegmentChannel.values
    }
    assert counts == {"members": 3, "followers": 2, "both": 5}
