"""In Chromium, in zh-Hant: a failed save puts focus on the error summary, whose link goes to the field."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from common.testing.browser import page_left
from common.testing.cast import verified_client_for
from notices.models import Notice
from notices.testing import add_recipients, everyone_segment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_failed_save_focuses_the_summary_in_chinese(browser, live_server, cast_a):
    add_recipients(cast_a.department, 2)
    segment = everyone_segment(cast_a.department)
    client = verified_client_for(cast_a.pr_officer)
    browser.get(live_server.url + "/static/css/portal.css")
    for name, value in (
        (settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value),
        (settings.LANGUAGE_COOKIE_NAME, "zh-hant"),
    ):
        browser.add_cookie({"name": name, "value": value, "path": "/"})
    browser.get(live_server.url + reverse("notices:compose", args=[cast_a.department.code]))
    Select(browser.find_element(By.NAME, "kind")).select_by_value("markdown")
    browser.find_element(By.NAME, "title_zh").send_keys("暫停供水")
    # send_keys of 1,279 characters is slow; set the value as a paste would.
    browser.execute_script("document.getElementById('id_body_zh').value = '字'.repeat(1279);")
    browser.find_element(By.CSS_SELECTOR, f"input[name=segments][value='{segment.pk}']").click()
    form = browser.find_element(By.ID, "notice-form")
    browser.find_element(By.ID, "save-notice").click()
    wait = WebDriverWait(browser, 15)
    wait.until(page_left(form))
    summary = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-error-summary]")))
    assert browser.switch_to.active_element == summary
    assert "內文（繁體中文）：中文訊息發送時有 3,905 位元組" in summary.text  # noqa: RUF001
    summary.find_element(By.CSS_SELECTOR, "a[href='#id_body_zh']").click()
    assert browser.switch_to.active_element.get_attribute("id") == "id_body_zh"
    assert not Notice.objects.exists()
