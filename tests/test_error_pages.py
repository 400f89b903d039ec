"""The 400, 403, 404, 500 and CSRF-failure pages: the portal's layout, in the reader's language."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.test import Client, RequestFactory
from django.utils import translation

from common import error_views
from common.testing.cast import Cast


def _text(response: HttpResponseBase) -> str:
    assert isinstance(response, HttpResponse)
    return response.content.decode()


@pytest.mark.django_db
def test_404_is_styled_and_translated(
    cast_a: Cast, verified_client: Callable[[User], Client]
) -> None:
    client = verified_client(cast_a.pr_officer)
    english = client.get("/notices/987654/")
    assert english.status_code == 404
    assert 'class="site-header"' in _text(english)
    assert "Page not found" in _text(english)
    chinese = client.get("/notices/987654/", HTTP_ACCEPT_LANGUAGE="zh-hant")
    assert chinese.status_code == 404
    assert "找不到頁面" in _text(chinese)
    assert "Page not found" not in _text(chinese)
    assert 'lang="zh-Hant-HK"' in _text(chinese)


@pytest.mark.django_db
def test_403_is_styled_and_translated(
    cast_a: Cast, verified_client: Callable[[User], Client]
) -> None:
    client = verified_client(cast_a.pr_officer)
    url = f"/departments/{cast_a.department.code}/settings/"
    english = client.get(url)
    assert english.status_code == 403
    assert 'class="site-header"' in _text(english)
    assert "You are not allowed to do this" in _text(english)
    chinese = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hant")
    assert "您無權進行此操作" in _text(chinese)
    assert "not allowed" not in _text(chinese)


@pytest.mark.django_db
def test_csrf_failure_is_the_portal_page_not_djangos(cast_a: Cast) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/login/", {"username": "x", "password": "y"}, HTTP_ACCEPT_LANGUAGE="zh-hant"
    )
    assert response.status_code == 403
    body = _text(response)
    assert 'class="site-header"' in body
    assert "表格已過期" in body
    assert "CSRF verification failed" not in body


@pytest.mark.django_db
def test_400_and_500_pages_render_in_chinese_without_a_working_request() -> None:
    request = RequestFactory().get("/")
    with translation.override("zh-hant"):
        bad = error_views.bad_request(request)
        broken = error_views.server_error(request)
    assert bad.status_code == 400
    assert "無法理解這個請求" in _text(bad)
    assert broken.status_code == 500
    assert "系統出了問題" in _text(broken)
    # Rendered without the request, so no language form that would lack its CSRF token.
    assert "set_language" not in _text(broken)
    assert "/i18n/setlang/" not in _text(broken)
    assert 'class="site-header"' in _text(broken)
