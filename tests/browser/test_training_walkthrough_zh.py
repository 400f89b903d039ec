"""The whole training walk in Traditional Chinese, in Chromium: a PR officer writes a notice that
asks for confirmation, a supervisor approves it, a trainee opens it on the simulated phone and
presses Confirm, the officer sees the confirmation on the dashboard, and an auditor verifies
the hash chain from the Chain page."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from audit.models import ChainVerification
from common.testing.browser import page_left
from delivery.models import Batch, Delivery
from delivery.testing import connect_department, make_recipients
from dingtalk.simulator.testing import running_simulator
from notices.models import Notice
from notices.testing import current_code, everyone_segment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TRAINEE = "wsd0000001"


def test_officer_supervisor_phone_confirm_dashboard_and_chain_in_chinese(
    live_server, browser, cast_a, settings, browser_login, axe_check
) -> None:
    with running_simulator(directory_size=50, time_scale=0, readers={"enabled": False}) as dt:
        settings.DINGTALK_BASE_URL = dt.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        settings.PORTAL_BASE_URL = live_server.url
        cache.clear()
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, 5, languages=("zh-hant",))
        segment = everyone_segment(wsd, name="全部訂閱者")
        # Pages that refresh themselves (the dashboard, the Chain page's progress) replace the
        # elements a condition just found: look again rather than fail.
        wait = WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,))

        # --- the PR officer writes a targeted notice that asks for confirmation --------------
        browser_login(browser, live_server.url, cast_a.pr_officer, "zh-hant")
        browser.get(f"{live_server.url}/notices/new/{wsd.code}/")
        wait.until(ec.presence_of_element_located((By.NAME, "title_zh")))
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-Hant-HK"
        browser.find_element(By.CSS_SELECTOR, "select[name=tier] option[value=targeted]").click()
        browser.find_element(By.CSS_SELECTOR, "select[name=kind] option[value=text]").click()
        browser.find_element(By.NAME, "title_zh").send_keys("沙田暫停供水")
        browser.find_element(By.NAME, "body_zh").send_keys("今晚十一時至明早六時暫停供水。請確認。")
        browser.find_element(By.NAME, "title_en").send_keys("Water suspension in Sha Tin")
        browser.find_element(By.NAME, "body_en").send_keys("Water off 23:00-06:00. Please confirm.")
        browser.find_element(By.CSS_SELECTOR, f"input[name=segments][value='{segment.pk}']").click()
        browser.find_element(By.NAME, "requires_confirmation").click()
        browser.find_element(By.ID, "save-notice").click()
        wait.until(ec.presence_of_element_located((By.ID, "submit-notice"))).click()
        notice = Notice.objects.get()
        wait.until(lambda _d: Notice.objects.get(pk=notice.pk).status == "submitted")

        # --- the supervisor approves from the inbox ------------------------------------------
        browser.delete_all_cookies()
        browser_login(browser, live_server.url, cast_a.supervisor, "zh-hant")
        browser.get(f"{live_server.url}/notices/inbox/")
        wait.until(ec.presence_of_element_located((By.ID, f"inbox-{notice.pk}")))
        form = browser.find_element(By.CSS_SELECTOR, "form.approve-form")
        form.find_element(By.NAME, "totp_token").send_keys(current_code(cast_a.supervisor))
        boxes = form.find_elements(By.NAME, "reach_acknowledged")
        if boxes:
            boxes[0].click()
        form.find_element(By.NAME, "approve").click()
        wait.until(page_left(form))
        wait.until(
            lambda _d: Batch.objects.filter(
                dispatch__plan__notice=notice, task_id__isnull=False
            ).exists()
        )

        # --- the trainee opens it on the simulated phone and presses Confirm ----------------
        dt.sim.advance(5)
        browser.get(f"{dt.base_url}/_sim/phones/{TRAINEE}?app={wsd.dingtalk_app_key}")
        phone = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "section.phone")))
        assert "沙田暫停供水" in phone.text
        assert "未讀" in phone.text
        axe_check(browser, "the simulated phone")
        phone.find_element(By.LINK_TEXT, "確認").click()
        wait.until(ec.presence_of_element_located((By.ID, "confirm-button"))).click()
        done = wait.until(ec.presence_of_element_located((By.ID, "confirm-done")))
        assert "已記錄您的確認" in done.text
        trainee = Delivery.objects.get(plan__notice=notice, recipient__dingtalk_user_id=TRAINEE)
        assert trainee.confirmed_at is not None
        # Opening the card on the phone read it, as on DingTalk.
        browser.get(f"{dt.base_url}/_sim/phones/{TRAINEE}?app={wsd.dingtalk_app_key}")
        assert "已讀" in browser.find_element(By.CSS_SELECTOR, "section.phone").text

        # --- the officer sees the confirmation on the dashboard -----------------------------
        browser.delete_all_cookies()
        browser_login(browser, live_server.url, cast_a.pr_officer, "zh-hant")
        browser.get(f"{live_server.url}/delivery/notices/{notice.pk}/")
        wait.until(ec.text_to_be_present_in_element((By.ID, "fig-confirmed"), "1"))
        assert "已確認" in browser.find_element(By.TAG_NAME, "main").text

        # --- the auditor verifies the chain from the Chain page -----------------------------
        browser.delete_all_cookies()
        browser_login(browser, live_server.url, cast_a.auditor, "zh-hant")
        browser.get(f"{live_server.url}/audit/")
        wait.until(ec.presence_of_element_located((By.ID, "chain-link"))).click()
        wait.until(ec.presence_of_element_located((By.ID, "chain-verify-button"))).click()
        wait.until(
            lambda d: d.find_element(By.ID, "chain-run-progress").get_attribute("value") == "100"
        )
        assert wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#chain-run-outcome.ok").text)
        run = ChainVerification.objects.get()
        assert run.ok is True
        assert run.requested_by == cast_a.auditor
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang").startswith("zh")
