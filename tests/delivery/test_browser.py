"""In Chromium: after approval the PR officer watches the progress bar and the read curve move
while the simulator's people read; then a supervisor recalls the notice."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from django.utils import timezone
from django_otp.oath import TOTP
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from common.testing.cast import TEST_PASSWORD, give_authenticator
from delivery.models import Batch, DeliveryPlan, PlanStatus
from delivery.services import receipts
from delivery.testing import connect_department, make_recipients
from dingtalk.simulator.testing import running_simulator
from notices import approval as notice_approval
from notices.testing import current_code, everyone_segment, submitted_notice, targeted_fields

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(browser, live_server, user) -> None:
    device = give_authenticator(user)
    browser.delete_all_cookies()
    wait = WebDriverWait(browser, 10)
    browser.get(live_server.url + "/")
    wait.until(ec.presence_of_element_located((By.NAME, "username")))
    browser.find_element(By.NAME, "username").send_keys(user.username)
    browser.find_element(By.NAME, "password").send_keys(TEST_PASSWORD + "\n")
    wait.until(ec.url_contains("/login/verify/"))
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    # The next step's code (within the accepted drift): this step's may be spent already.
    totp.time = time.time() + device.step
    browser.find_element(By.NAME, "token").send_keys(f"{totp.token():06d}\n")
    wait.until(lambda driver: "/login/" not in driver.current_url)


def test_officer_watches_reads_arrive_and_a_supervisor_recalls(
    live_server, browser, cast_a, settings
) -> None:
    with running_simulator(directory_size=200, time_scale=0, readers={"enabled": False}) as dt:
        settings.DINGTALK_BASE_URL = dt.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        cache.clear()
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, 120, languages=("en",))
        notice = submitted_notice(cast_a.pr_officer, wsd, **targeted_fields(everyone_segment(wsd)))
        # The supervisor's approval commits and hands the notice to the delivery engine.
        notice_approval.notice_approve(
            actor=cast_a.supervisor,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token=current_code(cast_a.supervisor),
        )
        plan = DeliveryPlan.objects.get(notice=notice)
        assert plan.planned == 120

        log_in(browser, live_server, cast_a.pr_officer)
        browser.get(f"{live_server.url}/delivery/notices/{notice.pk}/")
        wait = WebDriverWait(browser, 15)
        wait.until(ec.text_to_be_present_in_element((By.ID, "fig-accepted"), "120"))
        assert browser.find_element(By.ID, "fig-read").text == "0"
        assert browser.find_element(By.ID, "bar-read").get_attribute("width") in (
            "0",
            "0.0",
            "0.00",
        )
        flat_curve = browser.find_element(By.ID, "curve-line").get_attribute("points")

        # People open the notice on their phones; the receipt poll records it.
        dt.sim.advance(120)
        batches = list(Batch.objects.filter(dispatch__plan=plan))
        for batch in batches:
            for userid in batch.userids[:30]:
                dt.sim.mark_read(batch.task_id, userid)
            Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
            receipts.batch_poll_receipts(batch.pk)
        read = sum(min(30, len(batch.userids)) for batch in batches)
        wait.until(ec.text_to_be_present_in_element((By.ID, "fig-read"), str(read)))
        assert float(
            browser.find_element(By.ID, "bar-read").get_attribute("width")
        ) == pytest.approx(read * 100 / 120, abs=0.1)
        assert browser.find_element(By.ID, "curve-line").get_attribute("points") != flat_curve
        # The curve's axes are labelled, and its table alternative follows the live figures.
        ticks = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".delivery-curve .tick-y")]
        assert ticks == ["0%", "25%", "50%", "75%", "100%"]
        browser.find_element(By.CSS_SELECTOR, ".delivery-curve-table summary").click()
        wait.until(
            lambda driver: (
                f"{read * 100 / 120:.1f}%"
                in driver.find_element(By.ID, "delivery-curve-table").text
            )
        )
        assert "%" in browser.find_element(By.ID, "fig-reach-rate").text
        assert not browser.find_elements(By.ID, "delivery-recall")  # officers cannot recall

        log_in(browser, live_server, cast_a.supervisor)
        browser.get(f"{live_server.url}/delivery/notices/{notice.pk}/")
        reason = browser.find_element(By.NAME, "reason")
        reason.send_keys("Wrong suspension time")
        browser.find_element(By.ID, "delivery-recall").click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".messages"), "recalled"))
        plan.refresh_from_db()
        assert plan.status == PlanStatus.RECALLED
        for batch in batches:
            assert dt.sim.task(batch.task_id).recalled_at is not None
        wait.until(ec.text_to_be_present_in_element((By.ID, "delivery-status"), "Recalled"))
