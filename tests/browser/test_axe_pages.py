"""WCAG 2.2 AA: axe-core finds no violation on any page, in English and in Traditional Chinese.

Every page means: each named URL of the portal that answers GET with HTML (a test below fails
when a new one is neither visited nor on SKIPPED with its reason), every back-office (Django
admin) index, list, add and change page, and the error pages 400, 403, 404 and 500. The pages
and the scenario that fills them are common.testing.pages' (shared with the zh-Hant test).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from selenium.webdriver.common.by import By

from common.testing.cast import Cast, unverified_client_for
from common.testing.pages import ERROR_PAGES, Scenario, page_scenario, unvisited_url_names

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def scenario(cast_a: Cast, settings: Any) -> Iterator[Scenario]:
    with page_scenario(cast_a, settings) as s:
        yield s


def test_every_portal_page_is_checked_or_skipped_for_a_reason(scenario: Scenario) -> None:
    """A new page fails here until the scenario visits it (or SKIPPED gives a reason)."""
    missing, stale = unvisited_url_names(scenario)
    assert not missing, f"pages axe does not check: {sorted(missing)}"
    assert not stale, f"SKIPPED names a page that no longer exists or is visited: {stale}"


@pytest.mark.parametrize("language", ["en", "zh-hant"])
def test_axe_finds_no_violation_on_any_page(
    live_server, browser, scenario, language, axe_check, browser_login
) -> None:
    failures: list[str] = []

    def check(label: str, path: str, in_language: bool = True) -> None:
        browser.get(live_server.url + path)
        if in_language:  # the page really is in the language under test
            lang = browser.find_element(By.TAG_NAME, "html").get_attribute("lang") or ""
            if not lang.lower().startswith(language[:2]):
                failures.append(f"{label} ({browser.current_url}) is in {lang!r}")
        try:
            axe_check(browser, f"{label} [{language}]")
        except AssertionError as exc:
            failures.append(str(exc))

    for name, url in scenario.anonymous:
        browser.delete_all_cookies()
        browser.get(live_server.url + "/health/live")
        browser.add_cookie({"name": "django_language", "value": language, "path": "/"})
        check(name, url)
    for name, url, user in scenario.pre_otp:  # past the password, before the second factor
        session = unverified_client_for(user, authenticator=False).cookies[
            settings.SESSION_COOKIE_NAME
        ]
        browser.delete_all_cookies()
        browser.get(live_server.url + "/health/live")
        browser.add_cookie(
            {"name": settings.SESSION_COOKIE_NAME, "value": session.value, "path": "/"}
        )
        browser.add_cookie({"name": "django_language", "value": language, "path": "/"})
        check(name, url)
        assert browser.current_url == live_server.url + url, browser.current_url
    current = None
    for name, url, user in scenario.pages:
        if user != current:
            browser.delete_all_cookies()
            browser_login(browser, live_server.url, user, language)
            current = user
        check(name, url)
    browser.delete_all_cookies()
    browser_login(browser, live_server.url, scenario.cast.pr_officer, language)
    for code, url in ERROR_PAGES:
        check(f"error page {code}", url, in_language=False)
    current = None
    for url, user in scenario.admin:
        if user != current:
            browser.delete_all_cookies()
            browser_login(browser, live_server.url, user, language)
            current = user
        check("back office", url)
    assert not failures, "\n\n".join(failures)
