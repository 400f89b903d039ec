"""In Chromium: a citywide rainstorm notice from its template carries a Cantonese voice clip; the
notice page plays it (the audio element loads) with its transcript; after two approvals the
simulator's phones show the voice message and its text."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from common.testing.browser import page_left
from delivery.testing import connect_department, make_recipients
from dingtalk.simulator.testing import running_simulator
from notices import voice
from notices.models import MessageKind, Notice, Status
from notices.templating import templates_seed
from tests.integrations.test_end_to_end_browser import approve_in_inbox, log_in_as

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not voice.voice_available(), reason="espeak-ng (yue) or AMR encoder missing"
    ),
]

APP_KEY = "ding-demo-wsd"


def test_rainstorm_voice_plays_in_the_page_and_reaches_the_phones(
    live_server, browser, cast_a, settings
) -> None:
    with running_simulator(directory_size=300, time_scale=0) as sim:
        settings.DINGTALK_BASE_URL = sim.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        settings.PORTAL_BASE_URL = live_server.url
        cache.clear()
        department = connect_department(
            cast_a.department, next(a for a in sim.apps if a.code == "WSD")
        )
        make_recipients(department, 12, start=100)
        templates = {t.code: t for t in templates_seed(actor=None, department=department)}
        wait = WebDriverWait(browser, 30)

        # The officer starts from the Red Rainstorm template: the voice option is on.
        log_in_as(browser, live_server, cast_a.pr_officer)
        browser.get(f"{live_server.url}/notices/new/{department.code}/")
        Select(browser.find_element(By.ID, "template-picker")).select_by_value(
            str(templates["rainstorm-red"].pk)
        )
        apply = browser.find_element(By.ID, "template-apply")
        apply.click()
        wait.until(page_left(apply))  # the page comes back with the template's fields
        wait.until(ec.presence_of_element_located((By.NAME, "value_issue_time"))).send_keys("08:15")
        apply = browser.find_element(By.ID, "template-apply")
        apply.click()
        wait.until(page_left(apply))
        checkbox = wait.until(ec.presence_of_element_located((By.NAME, "voice_from_text")))
        assert checkbox.is_selected()
        browser.find_element(By.ID, "save-notice").click()

        # The notice page plays the clip and shows what it says.
        audio = wait.until(ec.presence_of_element_located((By.ID, "voice-audio")))
        notice = Notice.objects.get()
        assert notice.kind == MessageKind.VOICE
        assert notice.voice_from_text
        assert "紅色暴雨警告信號" in browser.find_element(By.ID, "voice-transcript").text
        wait.until(lambda d: d.execute_script("return arguments[0].readyState", audio) >= 2)
        assert browser.execute_script("return arguments[0].duration", audio) > 1
        played = browser.execute_async_script(
            "var a = arguments[0], done = arguments[1]; a.muted = true;"
            "a.play().then(function () { done(a.paused ? 'paused' : 'playing'); },"
            " function (e) { done('refused: ' + e); });",
            audio,
        )
        assert played == "playing"

        browser.find_element(By.ID, "submit-notice").click()
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".messages")))
        notice.refresh_from_db()
        assert notice.status == Status.SUBMITTED
        approve_in_inbox(browser, live_server, wait, notice, cast_a.supervisor)
        assert "Approved" in approve_in_inbox(
            browser, live_server, wait, notice, cast_a.supervisor2
        )

        # Every phone has the voice message and its text; the phone page shows both.
        sim.sim.advance(5)
        inbox = sim.sim.inbox("wsd0000100", APP_KEY)
        assert sorted(m["msg"]["msgtype"] for m in inbox) == ["markdown", "voice"]
        assert sim.sim.counters()["calls"]["media_upload"] == 1  # the clip, uploaded once
        browser.get(f"{sim.base_url}/_sim/phones/wsd0000100?app={APP_KEY}")
        page = browser.find_element(By.TAG_NAME, "body").text
        assert "Voice message 語音訊息" in page
        assert f"· {notice.attachment.duration_s} s" in page
        assert "紅色暴雨警告信號" in page
