"""A supervisor logs in with password and TOTP code in real Chromium and sees only their department."""

from __future__ import annotations

import time

import pytest
from django_otp.oath import TOTP
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from common.testing.cast import TEST_PASSWORD, give_authenticator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def code_for(device) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():06d}"


def test_supervisor_logs_in_with_password_and_totp_and_sees_only_their_department(
    live_server, browser, cast_a, cast_b
) -> None:
    device = give_authenticator(cast_a.supervisor)
    wait = WebDriverWait(browser, 10)
    browser.get(live_server.url + "/")
    wait.until(ec.presence_of_element_located((By.NAME, "username")))
    assert "/login/" in browser.current_url

    # Keyboard only: type, tab, type, Enter.
    browser.find_element(By.NAME, "username").send_keys(cast_a.supervisor.username)
    browser.find_element(By.NAME, "password").send_keys(TEST_PASSWORD + "\n")
    wait.until(ec.url_contains("/login/verify/"))
    browser.find_element(By.NAME, "token").send_keys(code_for(device) + "\n")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".tiles")))

    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Water Supplies Department" in body
    assert "Food and Environmental Hygiene" not in body
    tiles = browser.find_elements(By.CSS_SELECTOR, ".tiles .tile")
    assert len(tiles) == 1

    # Switching language keeps the page and shows Traditional Chinese.
    browser.find_element(By.CSS_SELECTOR, ".lang-form button").click()
    # The old page's h1 can vanish between being found and being read while the new page
    # loads; Chromium then reports a WebDriverException, not a stale element: retry on it.
    WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,)).until(
        ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "你的部門")
    )

    # Another department's page is indistinguishable from a missing one.
    browser.get(live_server.url + f"/departments/{cast_b.department.code}/")
    assert "Food and Environmental Hygiene" not in browser.page_source
