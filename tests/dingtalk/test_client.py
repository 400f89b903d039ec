"""The client reads its environment (proxy, CA bundle) once, when it is made."""

from __future__ import annotations


def test_the_environment_proxy_is_read_once_when_the_client_is_made(monkeypatch) -> None:
    from dingtalk.client import DingTalkClient

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.gov.hk.invalid:8080")
    monkeypatch.setenv("NO_PROXY", "")
    client = DingTalkClient("key", "secret", 1, base_url="https://oapi.dingtalk.com")
    assert client.session.proxies.get("https") == "http://proxy.gov.hk.invalid:8080"
    assert client.session.trust_env is False  # not scanned again on every request
    monkeypatch.setenv("NO_PROXY", "oapi.dingtalk.com")
    assert not DingTalkClient(
        "key", "secret", 1, base_url="https://oapi.dingtalk.com"
    ).session.proxies
