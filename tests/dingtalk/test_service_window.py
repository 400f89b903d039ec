"""The Service Window mass send in the client and the simulator (§8.1): uuid idempotency,
is_to_all, lists, allowed kinds, the 100,000 cap, the per-day dedupe, recall within 24 h, the
send records, faults and limits, follow events and failed pushes."""

from __future__ import annotations

import pytest
import requests

from dingtalk import service_window as sw
from dingtalk.client import DingTalkClient
from dingtalk.errors import (
    InvalidRequest,
    MessageInvalid,
    PermissionDenied,
    Throttled,
    TransportError,
    UuidRepeated,
)
from dingtalk.simulator.testing import running_simulator


@pytest.fixture
def dt():
    with running_simulator(directory_size=50, followers_size=5, time_scale=0) as dt:
        yield dt


@pytest.fixture
def client(dt):
    with DingTalkClient(
        dt.app_key, dt.app_secret, dt.agent_id, base_url=dt.base_url, clock=dt.sim.clock.now
    ) as c:
        yield c


def unionid(dt):
    return dt.sim.app().config.service_account_id


def test_to_all_reaches_every_follower_in_one_call_and_is_recalled(dt, client):
    sent = sw.send(client, unionid(dt), sw.text_body("黑色暴雨警告"), uuid="u-1", to_all=True)
    task = dt.sim.task(int(sent.task_id))
    assert sorted(task.delivered) == [f"fan-hko-{i:04d}" for i in range(1, 6)]
    assert dt.sim.calls["follow_message_send"] == 1
    dt.sim.advance(1)
    inbox = dt.sim.inbox("fan-hko-0003")
    assert inbox[0]["msg"] == {"msgtype": "text", "text": {"content": "黑色暴雨警告"}}
    record = sw.record_for_uuid(client, "u-1")
    assert record is not None
    assert record.status_name == "sent"
    assert record.receivers == 5
    sw.recall(client, sent.task_id)
    assert dt.sim.inbox("fan-hko-0003")[0]["recalled"] is True
    assert sw.record_for_uuid(client, "u-1").status_name == "recalled"


def test_same_uuid_is_refused_and_delivers_nothing(dt, client):
    body = sw.text_body("hello")
    sw.send(client, unionid(dt), body, uuid="same", userids=["fan-hko-0001"])
    with pytest.raises(UuidRepeated):
        sw.send(client, unionid(dt), body, uuid="same", userids=["fan-hko-0001"])
    dt.sim.advance(1)
    assert len(dt.sim.inbox("fan-hko-0001")) == 1


def test_recall_only_within_24_hours(dt, client):
    sent = sw.send(client, unionid(dt), sw.text_body("old"), uuid="old", to_all=True)
    dt.sim.advance(24 * 3600 + 1)
    with pytest.raises(InvalidRequest):
        sw.recall(client, sent.task_id)


def test_lists_kinds_and_dedupe(dt, client):
    pair = ["fan-hko-0001", "nobody", "fan-hko-0004"]
    sw.send(client, unionid(dt), sw.text_body("x"), uuid="a", userids=pair)
    task = dt.sim.task(max(dt.sim.app().tasks))
    assert task.delivered == ["fan-hko-0001", "fan-hko-0004"]
    assert task.invalid_userids == ["nobody"]
    # Identical content to several people reaches each once a day.
    sw.send(client, unionid(dt), sw.text_body("x"), uuid="b", to_all=True)
    task = dt.sim.task(max(dt.sim.app().tasks))
    assert task.delivered == ["fan-hko-0002", "fan-hko-0003", "fan-hko-0005"]
    # A single-person send is not deduplicated.
    sw.send(client, unionid(dt), sw.text_body("x"), uuid="c", userids=["fan-hko-0002"])
    assert dt.sim.task(max(dt.sim.app().tasks)).delivered == ["fan-hko-0002"]
    with pytest.raises(MessageInvalid):
        sw.from_work_message({"msgtype": "voice", "voice": {"media_id": "m", "duration": "3"}})
    answer = requests.post(
        dt.base_url + sw.SEND_PATH,
        json={"unionid": unionid(dt), "msg_type": "voice", "is_to_all": True, "uuid": "v"},
        headers={"x-acs-dingtalk-access-token": client.get_access_token()},
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidParameter"
    with pytest.raises(InvalidRequest):
        sw.send(client, "sa-someone-else", sw.text_body("x"), uuid="d", to_all=True)


def test_department_send_over_the_cap_does_not_run(dt, client):
    state = dt.sim.app()
    for userid in list(state.directory.iter_recipients([1]))[:3]:
        state.followers[userid] = ("member follower", 0.0)
    dt.sim.set_limits(service_window_cap=2)
    sent = sw.send(client, unionid(dt), sw.text_body("x"), uuid="cap", dept_ids=[1])
    assert dt.sim.task(int(sent.task_id)).delivered == []
    assert sw.record_for_uuid(client, "cap").status_name == "failed"
    dt.sim.set_limits(service_window_cap=100_000)
    sent = sw.send(client, unionid(dt), sw.text_body("y"), uuid="cap2", dept_ids=[1])
    assert len(dt.sim.task(int(sent.task_id)).delivered) == 3


def test_faults_limits_and_permissions_apply(dt, client):
    dt.sim.inject("follow_message_send", errcode=90018)
    with pytest.raises(Throttled):
        sw.send(client, unionid(dt), sw.text_body("x"), uuid="t1", to_all=True)
    dt.sim.set_limits(per_app_api_calls_per_s=1)
    sw.send(client, unionid(dt), sw.text_body("x"), uuid="t2", userids=["fan-hko-0001"])
    with pytest.raises(Throttled):
        sw.send(client, unionid(dt), sw.text_body("x"), uuid="t3", userids=["fan-hko-0001"])
    dt.sim.set_limits(per_app_api_calls_per_s=20)
    dt.sim.app().config.permissions = ["qyapi_base"]
    with pytest.raises(PermissionDenied):
        sw.send(client, unionid(dt), sw.text_body("x"), uuid="t4", to_all=True)


def test_timeout_fault_then_resend_with_same_uuid_delivers_once(dt):
    dt.sim.set_faults(timeout_hold_s=1.0)
    dt.sim.inject("follow_message_send", kind="timeout")
    with DingTalkClient(
        dt.app_key, dt.app_secret, dt.agent_id, base_url=dt.base_url, timeout=(1, 0.3)
    ) as slow:
        with pytest.raises(TransportError) as caught:
            sw.send(slow, unionid(dt), sw.text_body("once"), uuid="amb", to_all=True)
        assert caught.value.ambiguous
        with pytest.raises(UuidRepeated):
            sw.send(slow, unionid(dt), sw.text_body("once"), uuid="amb", to_all=True)
    dt.sim.advance(1)
    assert len(dt.sim.inbox("fan-hko-0001")) == 1


def test_follow_event_changes_followers_and_failed_push_is_kept(dt, client):
    record = dt.sim.follow(dt.app_key, "citizen-9", name="Chan Tai Man")
    assert record["ok"] is False  # no callback URL configured: the push failed
    assert "citizen-9" in dt.sim.app().followers
    dt.sim.follow(dt.app_key, "citizen-9", follow=False)
    assert "citizen-9" not in dt.sim.app().followers
    pushes = sw.failed_pushes(client)
    assert [e["call_back_tag"] for e in pushes.entries] == [
        "official_account_follow",
        "official_account_unfollow",
    ]
    assert pushes.entries[0]["event"]["UserId"] == ["citizen-9"]
    assert sw.failed_pushes(client).entries == []
