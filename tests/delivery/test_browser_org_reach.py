"""In Chromium: a citywide notice where the simulated DingTalk organisation (300 people) is larger
than the portal's recipients (60). The pre-flight, the approval page and the dashboard all say
the organisation's count, and the simulator's organisation-wide task reached that many."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from django.urls import reverse
from django_otp.oath import TOTP
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from common.testing.cast import TEST_PASSWORD, give_authenticator
from delivery.models import Batch, DeliveryPlan
from delivery.testing import connect_department, count_directory, make_recipients
from dingtalk.simulator.testing import running_simulator
from notices import approval, services
from notices.testing import citywide_fields, current_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ORGANISATION = 300
RECIPIENTS = 60


def log_in(browser, live_server, user) -> TOTP:
    device = give_authenticator(user)
    browser.delete_all_cookies()
    wait = WebDriverWait(browser, 10)
    browser.get(live_server.url + "/")
    wait.until(ec.presence_of_element_located((By.NAME, "username")))
    browser.find_element(By.NAME, "username").send_keys(user.username)
    browser.find_element(By.NAME, "password").send_keys(TEST_PASSWORD + "\n")
    wait.until(ec.url_contains("/login/verify/"))
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + device.step  # the next step's code: this one may be spent
    browser.find_element(By.NAME, "token").send_keys(f"{totp.token():06d}\n")
    wait.until(lambda driver: "/login/" not in driver.current_url)
    return totp


def test_citywide_org_reach_shows_the_organisation_everywhere_in_the_browser(
    live_server, browser, cast_a, settings
) -> None:
    with running_simulator(
        directory_size=ORGANISATION, time_scale=0, readers={"enabled": False}
    ) as dt:
        settings.DINGTALK_BASE_URL = dt.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        cache.clear()
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, RECIPIENTS)
        assert count_directory(wsd, dt) == ORGANISATION
        notice = services.notice_create(
            actor=cast_a.pr_officer, department=wsd, **citywide_fields()
        )
        wait = WebDriverWait(browser, 20)

        # The author's pre-flight: the organisation, not the 60 portal recipients.
        log_in(browser, live_server, cast_a.pr_officer)
        browser.get(live_server.url + reverse("notices:edit", args=[notice.pk]))
        wait.until(ec.text_to_be_present_in_element((By.ID, "pf-recipients"), str(ORGANISATION)))
        assert "organisation" in browser.find_element(By.ID, "pf-scope").text
        assert browser.find_element(By.ID, "pf-calls").text.endswith(
            "(Whole organisation in one call)"
        )
        assert int(browser.find_element(By.ID, "pf-forecast").text.split()[0]) > 1

        notice = services.notice_submit(actor=cast_a.pr_officer, notice=notice)
        assert notice.reach == ORGANISATION
        approval.notice_approve(
            actor=cast_a.supervisor,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token=current_code(cast_a.supervisor),
            reach_acknowledged=True,
        )

        # The second supervisor's approval page: the same count, strategy and policy.
        totp = log_in(browser, live_server, cast_a.supervisor2)
        browser.get(live_server.url + reverse("notices:detail", args=[notice.pk]))
        wait.until(ec.presence_of_element_located((By.ID, "approval-review")))
        assert browser.find_element(By.ID, "review-reach").text == str(ORGANISATION)
        assert "organisation" in browser.find_element(By.ID, "review-scope").text
        strategy = browser.find_element(By.ID, "review-strategy")
        assert strategy.get_attribute("data-strategy") == "org_wide"
        assert strategy.text == "Whole organisation in one call"
        assert browser.find_element(By.ID, "review-policy").text
        label = browser.find_element(By.CSS_SELECTOR, f"label[for='ack-{notice.pk}']").text
        assert f"reaches {ORGANISATION} people" in label
        browser.find_element(By.ID, f"ack-{notice.pk}").click()
        totp.time = time.time() + 2 * totp.step  # a code not used at login
        browser.find_element(By.ID, f"totp-{notice.pk}").send_keys(f"{totp.token():06d}")
        browser.find_element(By.NAME, "approve").click()
        wait.until(lambda _: DeliveryPlan.objects.filter(notice=notice).exists())

        plan = DeliveryPlan.objects.get(notice=notice)
        assert (plan.strategy, plan.reach) == ("org_wide", ORGANISATION)
        batch = Batch.objects.get(dispatch__plan=plan, to_all=True)
        wait.until(lambda _: Batch.objects.get(pk=batch.pk).task_id is not None)
        batch.refresh_from_db()
        dt.sim.advance(5)
        assert dt.sim.task(batch.task_id).total_recipients == ORGANISATION

        # The dashboard: the organisation's count, and no read figures DingTalk does not give.
        browser.get(live_server.url + f"/delivery/notices/{notice.pk}/")
        wait.until(ec.presence_of_element_located((By.ID, "fig-reach")))
        assert browser.find_element(By.ID, "fig-reach").text == str(ORGANISATION)
        assert browser.find_elements(By.ID, "delivery-no-reads")
        assert not browser.find_elements(By.ID, "fig-reach-rate")
