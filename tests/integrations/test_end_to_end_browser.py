"""End to end: a recorded Black Rainstorm warnsum payload on the local feed becomes a notice on
subscribers' phones, through the poll, an approver alert, and two supervisors approving in Chromium.

Everything real: the local feed server, the poll task's HTTP, the DingTalk simulator (approver
alerts and delivery), Celery eager, the live server. No trigger step approves anything.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from audit.models import AuditEvent
from common.testing.browser import page_left
from common.testing.cast import verified_client_for
from delivery.testing import connect_department, make_recipients
from dingtalk.simulator.testing import running_simulator
from integrations.models import WarningMapping
from integrations.services import warning_mappings
from integrations.tasks import poll_warnsum_task
from integrations.testing import local_feed, warnsum_payloads
from notices.models import Notice, Status, Tier
from notices.templating import templates_seed
from notices.testing import current_code
from notices.voice import voice_available

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

APP_KEY = "ding-demo-wsd"


def log_in_as(browser, live_server, user) -> None:
    client = verified_client_for(user)
    browser.get(live_server.url + "/static/css/portal.css")
    browser.delete_all_cookies()
    browser.add_cookie(
        {
            "name": django_settings.SESSION_COOKIE_NAME,
            "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
            "path": "/",
        }
    )


def approve_in_inbox(browser, live_server, wait, notice: Notice, user) -> str:
    log_in_as(browser, live_server, user)
    browser.get(f"{live_server.url}/notices/inbox/")
    item = wait.until(ec.presence_of_element_located((By.ID, f"inbox-{notice.pk}")))
    form = item.find_element(By.CSS_SELECTOR, "form.approve-form")
    form.find_element(By.NAME, "totp_token").send_keys(current_code(user))
    form.find_element(By.NAME, "reach_acknowledged").click()
    form.find_element(By.NAME, "approve").click()
    # The page before the click may carry messages of its own: wait for it to go first.
    wait.until(page_left(form))
    return wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".messages"))).text


def test_black_rainstorm_on_the_feed_reaches_phones_after_two_approvals(
    live_server, browser, cast_a, settings
) -> None:
    with running_simulator(directory_size=300, time_scale=0) as sim, local_feed() as feed:
        settings.DINGTALK_BASE_URL = sim.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        settings.INTEGRATIONS_HKO_WARNSUM_URL = feed.url
        settings.PORTAL_BASE_URL = live_server.url
        cache.clear()
        app = next(a for a in sim.apps if a.code == "WSD")
        department = connect_department(cast_a.department, app)
        # Subscribers are directory members wsd0000100..; the staff are wsd0000001..6.
        make_recipients(department, 40, start=100)
        templates = {t.code: t for t in templates_seed(actor=None, department=department)}
        warning_mappings.warning_mapping_save(
            actor=cast_a.system_admin,
            mapping=WarningMapping(
                department=department,
                code_pattern="WRAINB",
                template=templates["rainstorm-black"],
                cancel_template=templates["rainstorm-cancelled"],
                tier=Tier.CITYWIDE,
            ),
        )

        # Nothing in force: the poll prepares nothing.
        assert poll_warnsum_task.delay().get() == 0
        # The Observatory issues the Black Rainstorm signal.
        issued = timezone.now() - dt.timedelta(minutes=1)
        feed.set(warnsum_payloads(("WRAINB", "ISSUE", issued)))
        assert poll_warnsum_task.delay().get() == 1
        assert poll_warnsum_task.delay().get() == 0  # seen again: still one notice
        notice = Notice.objects.get()
        assert notice.status == Status.SUBMITTED
        assert notice.tier == Tier.CITYWIDE
        assert notice.reach == 40
        assert notice.triggered_at is not None

        # The approvers were alerted on DingTalk, once each; no subscriber has anything yet.
        sim.sim.advance(5)
        for supervisor in (cast_a.supervisor, cast_a.supervisor2):
            userid = supervisor.memberships.get().dingtalk_user_id
            alerts = sim.sim.inbox(userid, APP_KEY)
            assert len(alerts) == 1, userid
            assert "Approval needed" in alerts[0]["title"]
        assert sim.sim.inbox("wsd0000100", APP_KEY) == []
        assert AuditEvent.objects.filter(action="notices.approvers_alerted").count() == 1

        # Two supervisors approve in the browser (citywide needs both).
        wait = WebDriverWait(browser, 20)
        first = approve_in_inbox(browser, live_server, wait, notice, cast_a.supervisor)
        assert "second approver" in first
        notice.refresh_from_db()
        assert notice.status == Status.SUBMITTED
        second = approve_in_inbox(browser, live_server, wait, notice, cast_a.supervisor2)
        assert "Approved" in second

        # Approval hands the notice to the delivery engine; the simulator shows it on phones.
        sim.sim.advance(5)
        notice.refresh_from_db()
        assert notice.status in {Status.SENDING, Status.SENT}
        phones = [f"wsd{i:07d}" for i in range(100, 140)]
        received = {u: sim.sim.inbox(u, APP_KEY) for u in phones}
        # The rainstorm templates carry a Cantonese voice clip: the voice message and its text.
        expected = 2 if voice_available() else 1
        assert all(len(messages) == expected for messages in received.values()), received
        assert "Black Rainstorm" in str(received["wsd0000100"][0]["msg"]) or "黑色暴雨" in str(
            received["wsd0000100"][0]["msg"]
        )
        assert AuditEvent.objects.filter(action="integrations.warning_triggered").count() == 1
