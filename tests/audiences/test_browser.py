from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from audiences.models import Recipient
from audiences.testing import csv_bytes, recipient_row
from common.testing.cast import verified_client_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _wait(browser, condition, timeout=15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(condition)


def test_admin_uploads_previews_confirms_and_builds_a_segment(
    browser, live_server, cast_a, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    client = verified_client_for(cast_a.department_admin)
    browser.get(live_server.url + "/health/")
    browser.add_cookie(
        {
            "name": settings.SESSION_COOKIE_NAME,
            "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "path": "/",
        }
    )

    upload = tmp_path / "wsd.csv"
    upload.write_bytes(csv_bytes(recipient_row(i) for i in range(36)))
    browser.get(live_server.url + reverse("admin:audiences_recipient_import"))
    Select(browser.find_element(By.NAME, "department")).select_by_visible_text(
        str(cast_a.department)
    )
    browser.find_element(By.NAME, "import_file").send_keys(str(upload))
    Select(browser.find_element(By.NAME, "format")).select_by_visible_text("csv")
    browser.find_element(
        By.CSS_SELECTOR, "form[enctype='multipart/form-data'] [type=submit]"
    ).click()

    _wait(browser, lambda b: "u0000035" in b.page_source)
    assert "New" in browser.page_source
    assert not Recipient.objects.exists()  # the preview wrote nothing
    browser.find_element(By.CSS_SELECTOR, "form[action$='process_import/'] [type=submit]").click()
    # The import pages' own addresses contain "/recipient/" too: wait for the changelist itself.
    _wait(browser, lambda b: b.current_url.split("?")[0].endswith("/recipient/"))
    assert Recipient.objects.filter(department=cast_a.department).count() == 36

    browser.get(live_server.url + reverse("audiences:segment-create", args=["WSD"]))
    browser.find_element(By.NAME, "name").send_keys("Sham Shui Po high risk")
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=districts]"):
        label = box.find_element(By.XPATH, "..").text
        if "Sham Shui Po" in label or "Kowloon City" in label:
            box.click()
    browser.find_element(By.CSS_SELECTOR, "input[name=risk_levels][value=high]").click()
    expected = Recipient.objects.filter(
        department=cast_a.department,
        district__code__in=["SS", "KC"],
        risk_level="high",
        subscription_state="subscribed",
    ).count()
    assert expected > 0
    _wait(browser, lambda b: b.find_element(By.ID, "segment-count").text == str(expected))
    browser.find_element(By.CSS_SELECTOR, "#segment-form button[type=submit]").click()
    _wait(browser, lambda b: "Segment saved" in b.page_source)
    assert browser.find_element(By.ID, "segment-count").text == str(expected)
