"""A department's DingTalk client: credentials by reference, token shared through Django's cache."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from accounts.channel import client_for_department
from common.errors import ApplicationError
from dingtalk.simulator.testing import running_simulator


@pytest.fixture
def simulator():
    with running_simulator(directory_size=20) as dt:
        yield dt


@pytest.mark.django_db
def test_client_uses_the_referenced_secret_and_caches_the_token_in_django(
    cast_a, simulator, monkeypatch
) -> None:
    app = next(a for a in simulator.apps if a.code == "WSD")
    monkeypatch.setenv("DINGTALK_SECRET_WSD", app.app_secret)
    department = cast_a.department
    department.dingtalk_app_key = app.app_key
    department.dingtalk_agent_id = app.agent_id
    department.dingtalk_secret_ref = "env:DINGTALK_SECRET_WSD"
    department.save()
    cache.clear()
    client = client_for_department(department, base_url=simulator.base_url)
    token = client.get_access_token()
    assert cache.get(f"portal:{client.token_cache_key}") == token
    assert client_for_department(department, base_url=simulator.base_url) is client
    assert app.app_secret not in repr(client)


@pytest.mark.django_db
def test_an_unconfigured_department_gets_a_clear_error(cast_a) -> None:
    with pytest.raises(ApplicationError, match="no DingTalk app key"):
        client_for_department(cast_a.department)
    cast_a.department.dingtalk_app_key = "ding-x"
    cast_a.department.dingtalk_secret_ref = "env:DINGTALK_SECRET_NOT_SET"
    with pytest.raises(ApplicationError, match="DINGTALK_SECRET_NOT_SET"):
        client_for_department(cast_a.department)
