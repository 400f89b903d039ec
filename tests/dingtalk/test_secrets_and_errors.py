"""Tokens and secrets never reach logs or exception text; error bodies map to typed errors."""

from __future__ import annotations

import logging
import traceback

import pytest

from dingtalk import messages
from dingtalk.client import DingTalkClient, error_for, redact
from dingtalk.errors import (
    InvalidCredentials,
    InvalidRequest,
    IpNotWhitelisted,
    PermissionDenied,
    QuotaExhausted,
    ResultUnavailable,
    Throttled,
    TokenExpired,
    TransportError,
)


def users(n, start=0):
    """Generated userids of the first demo app (hko0000000, hko0000001, ...)."""
    return [f"hko{i:07d}" for i in range(start, start + n)]


def test_no_token_or_secret_in_logs_or_exceptions(dt, client, caplog):
    caplog.set_level(logging.DEBUG)
    client.send(messages.text("x"), userids=users(1))
    token = client.get_access_token()
    dt.sim.revoke_tokens()
    client.send(messages.text("y"), userids=users(1))
    new_token = client.get_access_token()
    failures = []
    for kind in ("http_500", "non_json", "html_ban"):
        dt.sim.inject("asyncsend_v2", kind)
        with pytest.raises(Exception) as info:
            client.send(messages.text("z"), userids=users(1))
        failures.append(info.value)
    dt.sim.inject("asyncsend_v2", errcode=40035)
    with pytest.raises(InvalidRequest) as invalid:
        client.send(messages.text("w"), userids=users(1))
    failures.append(invalid.value)
    unreachable = DingTalkClient(
        dt.app_key, dt.app_secret, dt.agent_id, base_url="http://127.0.0.1:9", timeout=(0.3, 0.3)
    )
    with pytest.raises(TransportError) as transport:
        unreachable.get_access_token()
    failures.append(transport.value)
    texts = [record.getMessage() for record in caplog.records]
    texts += [str(e) for e in failures] + [repr(e) for e in failures]
    texts += ["".join(traceback.format_exception(e)) for e in failures]
    texts.append(repr(client))
    assert any("access_token=[redacted]" in t for t in texts)  # urllib3 debug lines were redacted
    for secret in (token, new_token, dt.app_secret):
        assert not [t for t in texts if secret in t]


def test_redact_helper():
    assert (
        redact("GET /gettoken?appkey=k&appsecret=s3cret HTTP/1.1")
        == "GET /gettoken?appkey=k&appsecret=[redacted] HTTP/1.1"
    )
    assert redact("/x?access_token=abc123&y=1") == "/x?access_token=[redacted]&y=1"


@pytest.mark.parametrize(
    ("body", "exc", "transient"),
    [
        ({"errcode": 40001}, TokenExpired, True),
        ({"errcode": 42001}, TokenExpired, True),
        ({"errcode": 88, "sub_code": "40014"}, TokenExpired, True),
        ({"errcode": 90018}, Throttled, True),
        ({"errcode": 90002}, Throttled, True),
        ({"errcode": -1}, Throttled, True),
        ({"errcode": 90005}, Throttled, True),
        ({"errcode": 90020}, QuotaExhausted, False),
        ({"errcode": 60011}, PermissionDenied, False),
        ({"errcode": 88, "sub_code": "60011"}, PermissionDenied, False),
        ({"errcode": 60020}, IpNotWhitelisted, False),
        ({"errcode": 40089}, InvalidCredentials, False),
        ({"errcode": 41052}, ResultUnavailable, False),
        ({"errcode": 400002}, InvalidRequest, False),
    ],
)
def test_error_mapping(body, exc, transient):
    error = error_for("asyncsend_v2", {**body, "errmsg": "m", "request_id": "r1"})
    assert type(error) is exc
    assert error.is_transient is transient
    assert error.errcode == body["errcode"]
    assert "r1" in str(error)


def test_status_1111_body_is_an_ip_ban_with_minutes_converted(dt, client):
    client.get_access_token()
    dt.sim.inject("asyncsend_v2", "status_1111")
    with pytest.raises(Throttled) as info:
        client.send(messages.text("x"), userids=users(1))
    assert info.value.retry_after == 300.0
    assert info.value.scope == "ip_ban"
