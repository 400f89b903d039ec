"""The client against the simulator: every call and every documented limit."""

from __future__ import annotations

import time

import pytest

from dingtalk import messages
from dingtalk.client import DingTalkClient
from dingtalk.errors import (
    InvalidRequest,
    IpNotWhitelisted,
    PermissionDenied,
    QuotaExhausted,
    ResultUnavailable,
    ServerError,
    Throttled,
    TokenExpired,
    TransportError,
)
from dingtalk.simulator.config import Limits
from dingtalk.simulator.testing import running_simulator


def users(n, start=0):
    """Generated userids of the first demo app (hko0000000, hko0000001, ...)."""
    return [f"hko{i:07d}" for i in range(start, start + n)]


SEND = "asyncsend_v2"


def make_client(dt, **kwargs):
    options = {"base_url": dt.base_url, "clock": dt.sim.clock.now, "timeout": (1.0, 2.0), **kwargs}
    return DingTalkClient(dt.app_key, dt.app_secret, dt.agent_id, **options)


class DictCache:
    """A token cache that never expires entries, like a misconfigured shared cache."""

    def __init__(self):
        self.items = {}

    def get(self, key, /):
        return self.items.get(key)

    def set(self, key, value, ttl, /):
        self.items[key] = value

    def delete(self, key, /):
        self.items.pop(key, None)


# -- tokens ---------------------------------------------------------------------------------


def test_token_is_fetched_once_and_refreshed_five_minutes_before_expiry(dt, client):
    client.send(messages.text("a"), userids=users(1))
    client.send(messages.text("b"), userids=users(1))
    assert dt.sim.calls["gettoken"] == 1
    dt.sim.advance(7200 - 300 - 1)
    client.get_send_progress(client.send(messages.text("c"), userids=users(1)).task_id)
    assert dt.sim.calls["gettoken"] == 1
    dt.sim.advance(2)
    client.send(messages.text("d"), userids=users(1))
    assert dt.sim.calls["gettoken"] == 2
    assert dt.sim.errcodes[42001] == 0


def test_expired_token_in_a_stale_cache_is_refreshed_and_retried_once(dt):
    client = make_client(dt, token_cache=DictCache())
    client.send(messages.text("a"), userids=users(1))
    dt.sim.advance(7201)
    result = client.send(messages.text("b"), userids=users(1))
    assert result.task_id
    assert dt.sim.errcodes[42001] == 1
    assert dt.sim.calls["gettoken"] == 2


def test_token_lifetime_is_configurable_and_the_client_follows_expires_in(dt, client):
    dt.sim.set_limits(token_lifetime_s=600)
    first = client.get_access_token()
    dt.sim.advance(299)
    assert client.get_access_token() == first
    assert dt.sim.calls["gettoken"] == 1
    dt.sim.advance(2)  # cached for expires_in - 300 s
    assert client.get_access_token() == first  # still valid, so DingTalk returns the same token
    assert dt.sim.calls["gettoken"] == 2
    dt.sim.advance(601)
    assert client.get_access_token(force_refresh=True) != first


@pytest.mark.parametrize("errcode", [40001, 40014, 42001, 88])
def test_revoked_token_codes_trigger_one_refresh(dt, client, errcode):
    client.send(messages.text("a"), userids=users(1))
    dt.sim.revoke_tokens(errcode=errcode)
    client.send(messages.text("b"), userids=users(1))
    assert dt.sim.calls[SEND] == 3
    assert dt.sim.calls["gettoken"] == 2
    counted = 88 if errcode in (88, 40014) else errcode  # topapi paths wrap 40014 in 88
    assert dt.sim.errcodes[counted] == 1


def test_token_error_after_refresh_is_raised_not_retried_again(dt, client):
    dt.sim.inject(SEND, errcode=88, sub_code="40014", times=2)
    with pytest.raises(TokenExpired) as info:
        client.send(messages.text("a"), userids=users(1))
    assert info.value.is_transient
    assert dt.sim.calls[SEND] == 2


def test_wrong_secret_is_invalid_credentials(dt):
    client = DingTalkClient(dt.app_key, "wrong", dt.agent_id, base_url=dt.base_url)
    with pytest.raises(Exception) as info:
        client.send(messages.text("a"), userids=users(1))
    assert type(info.value).__name__ == "InvalidCredentials"
    assert not info.value.is_transient


# -- send, progress, result, recall, status bar, media ------------------------------------------


def test_send_progress_and_result_lists_fill_as_people_read(dt, client):
    sent = client.send(
        messages.text("Amber rain 黃雨"), userids=[*users(40), "nobody", "hko0000001"]
    )
    assert dt.sim.calls[SEND] == 1
    with pytest.raises(ResultUnavailable):
        # Progress is not complete at the very instant of sending (frozen clock).
        client.get_send_result(sent.task_id)
    assert client.get_send_progress(sent.task_id).status == 1
    dt.sim.advance(1)
    progress = client.get_send_progress(sent.task_id)
    assert (progress.progress_in_percent, progress.status, progress.done) == (100, 2, True)
    early = client.get_send_result(sent.task_id)
    assert early.invalid == ["nobody"]
    assert len(early.read) + len(early.unread) == 40
    assert len(early.read) < 5
    dt.sim.advance(6 * 3600)
    late = client.get_send_result(sent.task_id)
    assert 25 <= len(late.read) < 40  # a configurable share never reads
    assert set(late.read) | set(late.unread) == set(users(40))
    assert late.forbidden == []
    assert late.failed == []


def test_mark_read_shows_up_in_results(dt, client):
    dt.sim.set_readers(enabled=False)
    sent = client.send(messages.text("x"), userids=users(3))
    dt.sim.advance(1)
    dt.sim.mark_read(sent.task_id, "hko0000002")
    result = client.get_send_result(sent.task_id)
    assert result.read == ["hko0000002"]
    assert result.unread == ["hko0000000", "hko0000001"]


def test_invalid_departments_are_listed(dt, client):
    sent = client.send(messages.text("x"), dept_ids=[999999], userids=users(2))
    dt.sim.advance(1)
    result = client.get_send_result(sent.task_id)
    assert result.invalid_dept_ids == [999999]


def test_getsendresult_refused_for_more_than_100_recipients_and_after_24_hours(dt, client):
    big = client.send(messages.text("district"), dept_ids=[100])  # 300 users / 36 depts, +sub-dept
    small = client.send(messages.text("small"), userids=users(100))
    dt.sim.advance(60)
    assert dt.sim.task(big.task_id).total_recipients > 0
    many = client.send(messages.text("all"), to_all_user=True)
    dt.sim.advance(60)
    with pytest.raises(ResultUnavailable) as info:
        client.get_send_result(many.task_id)
    assert info.value.errcode == 41052
    assert not info.value.is_transient
    assert (
        len(client.get_send_result(small.task_id).unread)
        + len(client.get_send_result(small.task_id).read)
        == 100
    )
    dt.sim.advance(24 * 3600)
    with pytest.raises(InvalidRequest):
        client.get_send_result(small.task_id)


def test_recall_within_24_hours_only(dt, client):
    first = client.send(messages.text("wrong notice"), userids=users(2))
    client.recall(first.task_id)
    assert dt.sim.task(first.task_id).recalled_at is not None
    assert dt.sim.inbox("hko0000000")[0]["recalled"] is True
    second = client.send(messages.text("old notice"), userids=users(2))
    dt.sim.advance(24 * 3600 + 1)
    with pytest.raises(InvalidRequest) as info:
        client.recall(second.task_id)
    assert info.value.errcode == 400002


def test_status_bar_update_on_oa_message(dt, client):
    oa = messages.oa("https://fsd.gov.hk/1", "FFBBBBBB", title="Hill fire", status_value="進行中")
    sent = client.send(oa, userids=users(3))
    client.update_status_bar(sent.task_id, "已完成", "0xFF78C06E")
    assert dt.sim.task(sent.task_id).status_bar == {
        "status_value": "已完成",
        "status_bg": "0xFF78C06E",
    }
    text = client.send(messages.text("t"), userids=users(1))
    with pytest.raises(InvalidRequest):
        client.update_status_bar(text.task_id, "x")
    crowd = client.send(oa, userids=users(6, 10))
    with pytest.raises(InvalidRequest) as info:
        client.update_status_bar(crowd.task_id, "x")
    assert info.value.errcode == 41052


def test_media_upload_then_image_message(dt, client):
    upload = client.upload_media("image", "typhoon.png", b"\x89PNG" + b"0" * 100)
    assert upload.media_id.startswith("@")
    assert upload.type == "image"
    client.send(messages.image(upload.media_id), userids=users(1))
    with pytest.raises(InvalidRequest) as info:
        client.send(messages.image("@unknownmedia"), userids=users(1))
    assert info.value.errcode == 40007


def test_bad_messages_and_oversized_lists_are_rejected_before_any_call(dt, client):
    with pytest.raises(ValueError):
        client.send({"msgtype": "text", "text": {"content": "字" * 700}}, userids=users(1))
    with pytest.raises(InvalidRequest):
        client.send(messages.text("x"), userids=users(101))
    with pytest.raises(InvalidRequest):
        client.send(messages.text("x"), dept_ids=list(range(21)))
    with pytest.raises(InvalidRequest):
        client.send(messages.text("x"))
    assert dt.sim.calls[SEND] == 0


# -- documented limits ------------------------------------------------------------------------------


def test_past_20_calls_per_second_the_app_gets_90018_and_the_advice_is_right(dt, client):
    for i in range(20):
        client.send(messages.text(f"n{i}"), userids=users(1, i))
    with pytest.raises(Throttled) as info:
        client.send(messages.text("n20"), userids=users(1, 20))
    assert (info.value.errcode, info.value.scope, info.value.retry_after) == (90018, "app_api", 1.0)
    assert info.value.is_transient
    assert dt.sim.counters()["throttled_90018"] == 1
    # The limit is per API: another API still answers in the same second.
    client.list_sub_department_ids()
    dt.sim.advance(info.value.retry_after)
    assert client.send(messages.text("n20"), userids=users(1, 20)).task_id


def test_recipients_over_5000_per_minute_are_forbidden_143103_while_send_succeeds():
    with running_simulator(directory_size=6000, time_scale=0) as dt:
        client = make_client(dt)
        for i in range(50):
            client.send(messages.text(f"bulletin {i}"), userids=users(100, i * 100))
            dt.sim.advance(0.1)
        over = client.send(messages.text("bulletin 50"), userids=users(100, 5000))
        assert over.task_id  # errcode 0: the drop is silent
        dt.sim.advance(1)
        result = client.get_send_result(over.task_id)
        assert result.read == []
        assert result.unread == []
        assert len(result.forbidden) == 100
        assert {(e.code, e.count) for e in result.forbidden} == {(143103, 5000)}
        assert set(result.forbidden_userids) == set(users(100, 5000))
        dt.sim.advance(60)
        later = client.send(messages.text("bulletin 51"), userids=users(100, 5000))
        dt.sim.advance(1)
        assert client.get_send_result(later.task_id).forbidden == []


def test_identical_content_reaches_a_user_once_a_day_143106(dt, client):
    msg = messages.text("Boil water notice 煲水通知")
    client.send(msg, userids=users(2))
    again = client.send(msg, userids=users(3))
    dt.sim.advance(1)
    result = client.get_send_result(again.task_id)
    assert result.forbidden_codes() == {"hko0000000": 143106, "hko0000001": 143106}
    assert result.unread + result.read == ["hko0000002"]
    dt.sim.advance(24 * 3600)
    next_day = client.send(msg, userids=users(2))
    dt.sim.advance(1)
    assert client.get_send_result(next_day.task_id).forbidden == []


def test_per_user_daily_cap_143105(dt, client):
    assert Limits().per_user_daily_cap == 500
    dt.sim.set_limits(per_user_daily_cap=5)
    for i in range(5):
        client.send(messages.text(f"update {i}"), userids=users(1))
    capped = client.send(messages.text("update 5"), userids=users(1))
    dt.sim.advance(1)
    assert client.get_send_result(capped.task_id).forbidden[0].code == 143105


def test_to_all_user_three_times_a_day(dt, client):
    tasks = [client.send(messages.text(f"all {i}"), to_all_user=True).task_id for i in range(4)]
    delivered = [len(dt.sim.task(t).delivered) for t in tasks]
    assert delivered[:3] == [300, 300, 300]
    assert delivered[3] == 0
    assert {code for _, code, _ in dt.sim.task(tasks[3]).forbidden} == {1430003}
    dt.sim.advance(24 * 3600)
    assert (
        len(dt.sim.task(client.send(messages.text("all 5"), to_all_user=True).task_id).delivered)
        == 300
    )


def test_monthly_quota_90020_with_exempt_calls_exempt(dt, client):
    dt.sim.set_limits(monthly_quotas={"standard": 5, "professional": 3})
    for i in range(3):
        client.send(messages.text(f"m{i}"), userids=users(1))
    with pytest.raises(QuotaExhausted) as info:
        client.send(messages.text("m3"), userids=users(1))
    assert info.value.errcode == 90020
    assert not info.value.is_transient
    # Token and directory calls are exempt.
    client.get_access_token(force_refresh=True)
    assert client.list_user_ids(100)
    assert client.get_user("hko0000001").userid == "hko0000001"
    dt.sim.advance(32 * 86400)
    assert client.send(messages.text("next month"), userids=users(1)).task_id


def test_ip_ban_after_too_many_calls_answers_html_for_every_api(dt, client):
    dt.sim.set_limits(ip_calls_per_window=30)
    for _ in range(29):
        client.list_sub_department_ids()
        dt.sim.advance(0.1)  # stay under 20 calls/s per API
    with pytest.raises(Throttled) as info:
        client.list_sub_department_ids()
    assert (info.value.scope, info.value.retry_after) == ("ip_ban", 300.0)
    with pytest.raises(Throttled):
        client.get_access_token(force_refresh=True)
    dt.sim.advance(300)
    assert client.list_sub_department_ids()


def test_ip_ban_json_variant(dt, client):
    dt.sim.set_limits(ip_ban_style="json")
    dt.sim.ban_ip("127.0.0.1")
    with pytest.raises(Throttled) as info:
        client.list_sub_department_ids()
    assert (info.value.scope, info.value.retry_after) == ("ip_ban", 300.0)


def test_one_call_reaches_at_most_5000_people_in_a_large_organisation():
    with running_simulator(directory_size=1_000_000, time_scale=0) as dt:
        client = make_client(dt)
        started = time.perf_counter()
        sent = client.send(messages.text("Typhoon signal 8"), to_all_user=True)
        assert time.perf_counter() - started < 1.0
        task = dt.sim.task(sent.task_id)
        assert len(task.delivered) == 5000
        assert task.overflow_forbidden == 995_000
        assert dt.sim.counters()["forbidden"]["143103"] == 995_000
        assert client.get_send_progress(sent.task_id).status == 1
        dt.sim.advance(200)
        assert client.get_send_progress(sent.task_id).done


def test_org_wide_send_with_limits_off_is_recorded_compactly():
    with running_simulator(directory_size=1_000_000, time_scale=0, limits=False) as dt:
        client = make_client(dt)
        started = time.perf_counter()
        sent = client.send(messages.text("Everyone"), to_all_user=True)
        assert time.perf_counter() - started < 1.0
        assert dt.sim.task(sent.task_id).total_recipients == 1_000_000
        dt.sim.advance(400)
        assert dt.sim.inbox("hko0765432")[0]["task_id"] == sent.task_id


# -- faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "errcode", "exc", "transient"),
    [
        ("http_500", -1, ServerError, True),
        ("non_json", -1, TransportError, True),
        ("errcode", -1, Throttled, True),
        ("errcode", 90002, Throttled, True),
        ("errcode", 40035, InvalidRequest, False),
        ("errcode", 60011, PermissionDenied, False),
        ("html_ban", -1, Throttled, True),
    ],
)
def test_injected_faults_map_to_typed_errors_and_are_not_retried(
    dt, client, kind, errcode, exc, transient
):
    client.get_access_token()
    dt.sim.inject(SEND, kind, errcode=errcode)
    with pytest.raises(exc) as info:
        client.send(messages.text("x"), userids=users(1))
    assert info.value.is_transient is transient
    assert dt.sim.calls[SEND] == 1


def test_timeout_after_accept_is_ambiguous_and_the_task_exists():
    with running_simulator(directory_size=50, time_scale=0, faults={"timeout_hold_s": 1.0}) as dt:
        client = make_client(dt, timeout=(1.0, 0.3))
        dt.sim.inject(SEND, "timeout")
        with pytest.raises(TransportError) as info:
            client.send(messages.text("x"), userids=users(1))
        assert info.value.ambiguous
        assert info.value.is_transient
        assert dt.sim.counters()["tasks"] == 1


def test_connection_refused_is_not_ambiguous():
    client = DingTalkClient("k", "s", 1, base_url="http://127.0.0.1:9", timeout=(0.5, 0.5))
    with pytest.raises(TransportError) as info:
        client.get_access_token()
    assert not info.value.ambiguous


def test_random_error_rate_and_latency(dt, client):
    client.get_access_token()
    dt.sim.set_faults(error_rate=1.0, error_codes=[-1])
    with pytest.raises(Throttled):
        client.send(messages.text("x"), userids=users(1))
    dt.sim.set_faults(error_rate=0.0, latency_s=0.2)
    started = time.perf_counter()
    client.list_sub_department_ids()
    assert time.perf_counter() - started >= 0.2


def test_ip_whitelist_and_missing_permission(dt, client):
    dt.sim.app().config.ip_whitelist = ["10.0.0.1"]
    with pytest.raises(IpNotWhitelisted) as info:
        client.send(messages.text("x"), userids=users(1))
    assert info.value.errcode == 60020
    assert not info.value.is_transient
    dt.sim.app().config.ip_whitelist = None
    dt.sim.app().config.permissions = ["qyapi_base"]
    with pytest.raises(PermissionDenied) as denied:
        client.list_sub_departments()
    assert (denied.value.errcode, denied.value.sub_code) == (88, "60011")


# -- directory ------------------------------------------------------------------------------------


def test_directory_walk_and_user_paging(dt, client):
    dt.sim.set_limits(per_app_api_calls_per_s=None)  # a full walk is 37 calls in one frozen second
    districts = client.list_sub_departments(1, language="en_US")
    assert len(districts) == 18
    assert districts[0].name == "Central and Western"
    assert client.list_sub_departments(1)[0].name == "中西區"
    assert client.list_sub_department_ids(100) == [200]
    assert len(list(client.iter_department_ids())) == 37
    ids = client.list_user_ids(100)
    assert ids[:2] == ["hko0000000", "hko0000036"]
    page = client.list_users(100, cursor=0, size=3)
    assert page.has_more
    assert page.next_cursor == 3
    everyone = list(client.iter_users(100, size=3))
    assert [u.userid for u in everyone] == ids
    user = client.get_user("hko0000036")
    assert user.e164_mobile is not None
    assert user.e164_mobile[:5] in ("+8525", "+8526", "+8529")
    assert len(user.e164_mobile) == 12
    with pytest.raises(InvalidRequest) as info:
        client.list_user_ids(424242)
    assert info.value.errcode == 60003
    with pytest.raises(InvalidRequest):
        client.get_user("ghost")


def test_multiple_apps_have_separate_credentials_and_quotas(dt):
    fsd = dt.app("ding-demo-fsd")
    client = DingTalkClient(
        fsd.app_key, fsd.app_secret, fsd.agent_id, base_url=dt.base_url, clock=dt.sim.clock.now
    )
    sent = client.send(messages.text("Fire danger red 紅色火災危險"), userids=["fsd0000001"])
    assert dt.sim.task(sent.task_id).app_key == "ding-demo-fsd"
    assert fsd.edition == "standard"
    assert dt.app("ding-demo-hko").edition == "professional"
    wrong_agent = DingTalkClient(fsd.app_key, fsd.app_secret, dt.agent_id, base_url=dt.base_url)
    with pytest.raises(InvalidRequest) as info:
        wrong_agent.send(messages.text("x"), userids=["fsd0000001"])
    assert info.value.errcode == 40056
