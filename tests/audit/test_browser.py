"""An auditor filters the trail by one target in a real browser and downloads the CSV."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
from django.conf import settings

from accounts import services as accounts_services
from accounts.models import Role
from audit.actions import AuditAction
from common.testing.cast import verified_client_for


def _wait_for_download(folder: Path, timeout: float = 15.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.suffix == ".csv"]
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no CSV arrived in {folder}: {list(folder.iterdir())}")


@pytest.mark.browser
def test_auditor_filters_by_target_and_downloads_the_csv(
    transactional_db, live_server, browser, cast_a, cast_b, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    department = cast_a.department
    accounts_services.department_update(
        actor=cast_a.system_admin, department=department, changes={"name_zh": "水務署新名"}
    )
    accounts_services.department_update(
        actor=cast_b.system_admin, department=cast_b.department, changes={"name_zh": "食環署"}
    )
    accounts_services.membership_grant(
        actor=cast_a.system_admin,
        user=cast_b.pr_officer,
        department=department,
        role=Role.PR_OFFICER,
    )

    session = verified_client_for(cast_a.auditor).cookies[settings.SESSION_COOKIE_NAME].value
    browser.get(f"{live_server.url}/health/")
    browser.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": session, "path": "/"})
    browser.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )

    browser.get(f"{live_server.url}/audit/")
    assert browser.find_element(By.ID, "audit-events")
    browser.find_element(By.ID, "id_target_type").send_keys("accounts.Department")
    browser.find_element(By.ID, "id_target_id").send_keys(str(department.pk))
    browser.find_element(By.CSS_SELECTOR, "#audit-filter-form button[type=submit]").click()
    WebDriverWait(browser, 10).until(
        lambda d: "target_type=" in d.current_url and d.find_elements(By.ID, "audit-events")
    )

    rows = browser.find_elements(By.CSS_SELECTOR, "#audit-events tbody tr")
    actions = [r.find_elements(By.TAG_NAME, "td")[4].text for r in rows]
    assert sorted(actions) == sorted(
        [AuditAction.DEPARTMENT_CREATED, AuditAction.DEPARTMENT_UPDATED]
    )

    browser.find_element(By.ID, "export-csv").click()
    downloaded = _wait_for_download(tmp_path)
    records = list(csv.DictReader(io.StringIO(downloaded.read_text(encoding="utf-8-sig"))))
    assert {(r["target_type"], r["target_id"]) for r in records} == {
        ("accounts.Department", str(department.pk))
    }
    assert sorted(r["action"] for r in records) == sorted(actions)
    assert any("水務署新名" in r["data"] for r in records)
