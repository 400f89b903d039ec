"""A PR officer composes a citywide rainstorm notice in Chromium; two supervisors approve it.

The author also holds a supervisor role, so the page offers them the approve form: their own
attempt must be refused. Sessions are opened as after a real login (the login itself is
tested in test_login_browser.py), so each approval can type a fresh authenticator code.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from accounts import services as accounts_services
from accounts.models import Role
from common.testing.browser import page_left
from common.testing.cast import verified_client_for
from delivery.models import DeliveryPlan
from notices.models import Notice, Status
from notices.testing import add_recipients, current_code, rainstorm_template

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in_as(browser, live_server, user) -> None:
    client = verified_client_for(user)
    browser.get(live_server.url + "/static/css/portal.css")
    browser.delete_all_cookies()
    browser.add_cookie(
        {
            "name": settings.SESSION_COOKIE_NAME,
            "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "path": "/",
        }
    )


def approve_on(browser, wait, notice: Notice, user) -> str:
    form = browser.find_element(By.CSS_SELECTOR, "form.approve-form")
    form.find_element(By.NAME, "totp_token").send_keys(current_code(user))
    form.find_element(By.NAME, "reach_acknowledged").click()
    form.find_element(By.NAME, "approve").click()
    # The page before the click may carry messages of its own: wait for it to go first.
    wait.until(page_left(form))
    return wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".messages"))).text


def test_officer_composes_from_template_and_two_supervisors_approve(
    live_server, browser, cast_a
) -> None:
    author = cast_a.pr_officer
    accounts_services.membership_grant(
        actor=None,
        user=author,
        department=cast_a.department,
        role=Role.SUPERVISOR,
    )
    add_recipients(cast_a.department, 1200)
    template = rainstorm_template(cast_a.department, "red")
    wait = WebDriverWait(browser, 15)

    # --- the PR officer composes from the template ---------------------------------------
    log_in_as(browser, live_server, author)
    browser.get(f"{live_server.url}/notices/new/{cast_a.department.code}/")
    Select(browser.find_element(By.ID, "template-picker")).select_by_value(str(template.pk))
    browser.find_element(By.ID, "template-apply").click()
    wait.until(ec.presence_of_element_located((By.NAME, "value_issue_time")))
    browser.find_element(By.NAME, "value_issue_time").send_keys("10:15")
    browser.find_element(By.ID, "template-apply").click()
    wait.until(ec.text_to_be_present_in_element_value((By.NAME, "title_zh"), "紅色暴雨警告信號"))
    # The template's Cantonese voice clip is on by default; this notice goes as the action
    # card alone (tests/browser/test_voice_browser.py sends one with its voice).
    voice_boxes = browser.find_elements(By.NAME, "voice_from_text")
    if voice_boxes and voice_boxes[0].is_selected():
        voice_boxes[0].click()

    # The live preview shows both languages as DingTalk action cards, with counters.
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#preview-zh .bubble-action_card")))
    assert "Red Rainstorm Warning Signal" in browser.find_element(By.ID, "preview-en").text
    assert "安全提示" in browser.find_element(By.ID, "preview-zh").text
    assert "10:15" in browser.find_element(By.ID, "preview-zh").text
    assert "of 2048 bytes" in browser.find_element(By.ID, "counter-bytes-zh").text
    # Typing updates the preview.
    body_en = browser.find_element(By.NAME, "body_en")
    body_en.send_keys("\n\nAvoid the Sha Tin underpass.")
    wait.until(ec.text_to_be_present_in_element((By.ID, "preview-en"), "Sha Tin underpass"))
    # Pre-flight figures.
    wait.until(ec.text_to_be_present_in_element((By.ID, "pf-recipients"), "1,200"))
    assert browser.find_element(By.ID, "pf-calls").text.strip() != "—"
    assert "HK$" in browser.find_element(By.ID, "pf-saving").text
    assert browser.find_element(By.ID, "pf-approvers").text == "2"
    assert browser.find_element(By.ID, "pf-eta").text.strip() != "—"

    browser.find_element(By.ID, "save-notice").click()
    wait.until(ec.presence_of_element_located((By.ID, "submit-notice")))
    notice = Notice.objects.get()
    assert notice.tier == "citywide"
    assert notice.kind == "action_card"
    assert "Sha Tin underpass" in notice.body_en
    browser.find_element(By.ID, "submit-notice").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "notice-status"), "Waiting for approval"))

    # The author (who holds a supervisor role too) is not offered Approve, and is told why;
    # a forged approval is refused by the service (tests/notices/test_views.py).
    assert not browser.find_elements(By.CSS_SELECTOR, "form.approve-form")
    why = browser.find_element(By.ID, f"why-not-{notice.pk}").text
    assert "You wrote this version, so another supervisor must approve it." in why
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED

    # --- supervisor A approves from the inbox ---------------------------------------------
    log_in_as(browser, live_server, cast_a.supervisor)
    browser.get(f"{live_server.url}/notices/inbox/")
    wait.until(ec.presence_of_element_located((By.ID, f"inbox-{notice.pk}")))
    assert "1200" in browser.find_element(By.CSS_SELECTOR, ".inbox-reach").text
    message = approve_on(browser, wait, notice, cast_a.supervisor)
    assert "second approver" in message
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED

    # --- citywide: supervisor B approves too ----------------------------------------------
    log_in_as(browser, live_server, cast_a.supervisor2)
    browser.get(f"{live_server.url}/notices/{notice.pk}/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "form.approve-form")))
    message = approve_on(browser, wait, notice, cast_a.supervisor2)
    assert "Approved" in message
    notice.refresh_from_db()
    assert notice.approved_at is not None
    # The final approval's commit handed the notice to delivery, by name, exactly once (this
    # department has no DingTalk app, so delivery pauses it: delivery is not under test here).
    assert DeliveryPlan.objects.filter(notice=notice).count() == 1
    assert notice.status in (Status.SENDING, Status.PAUSED)
    assert sorted(notice.approvals.values_list("approver__username", flat=True)) == [
        "wsd.supervisor",
        "wsd.supervisor2",
    ]
