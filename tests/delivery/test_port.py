"""The public base URL: one setting (PORTAL_BASE_URL), defaulted from the port `make run` starts
the portal on (PORT); the links DingTalk messages carry follow it. A live portal on a
non-default port, a confirmation sent through the simulator, and its Confirm link followed."""

from __future__ import annotations

import http.cookiejar
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from delivery import messages
from delivery.models import Delivery, DeliveryPlan
from delivery.services import planner
from delivery.testing import connect_demo_app, make_notice, make_recipients, stopped_clock_simulator
from notices.models import Tier

ROOT = Path(__file__).resolve().parents[2]


def base_url_for_port(port: int) -> str:
    """PORTAL_BASE_URL as the settings compute it when the portal is started with PORT=port."""
    env = {k: v for k, v in os.environ.items() if k != "PORTAL_BASE_URL"}
    env.update({"PORT": str(port), "DJANGO_SETTINGS_MODULE": "config.settings.test"})
    code = "import django; django.setup(); from django.conf import settings; print(settings.PORTAL_BASE_URL)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_base_url_port_default_follows_port() -> None:
    assert base_url_for_port(8100) == "http://127.0.0.1:8100"
    assert base_url_for_port(8000) == "http://127.0.0.1:8000"


@pytest.mark.django_db(transaction=True)
def test_confirm_link_on_a_non_default_port_opens_the_live_portal(
    live_server, settings, cast_a
) -> None:
    port = urllib.parse.urlsplit(live_server.url).port
    assert port is not None
    assert port != 8000  # the portal runs on another port than the default
    settings.PORTAL_BASE_URL = base_url_for_port(port)
    with stopped_clock_simulator(settings, directory_size=50) as sim:
        wsd = connect_demo_app(cast_a.department, sim, "WSD")
        make_recipients(wsd, 2, languages=("en",))
        notice = make_notice(wsd, tier=Tier.CLOSED_LOOP, requires_confirmation=True)
        planner.plan_notice(notice.pk)
        plan = DeliveryPlan.objects.get(notice=notice)
        sim.sim.advance(5)
        person = Delivery.objects.filter(plan=plan).order_by("pk").first()
        inbox = sim.sim.inbox(person.dingtalk_user_id, "ding-demo-wsd")
        url = inbox[0]["msg"]["action_card"]["single_url"]
        # The notice page an image card leads to uses the same address.
        assert messages.notice_page_url(notice.pk).startswith(f"http://127.0.0.1:{port}/")
    assert url.startswith(f"http://127.0.0.1:{port}/delivery/c/")
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(url, timeout=10) as response:
        assert response.status == 200
        page = response.read().decode()
    assert "I confirm" in page
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1)}).encode()
    request = urllib.request.Request(url, data=body, headers={"Referer": url})  # noqa: S310
    with opener.open(request, timeout=10) as response:
        assert "confirmation was recorded" in response.read().decode()
    person.refresh_from_db()
    assert person.confirmed_at is not None
