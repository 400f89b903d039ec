"""A CAP Cancel after the notice went out: a supervisor recalls it from the recalls page.

Real delivery to the DingTalk simulator, real recall through the delivery engine.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse

from audit.models import AuditEvent
from delivery.testing import connect_department, make_recipients
from dingtalk.simulator.testing import running_simulator
from integrations.models import CancellationRequest, CancellationState
from integrations.services import callers
from integrations.testing import CapInfoSpec, cap_alert_xml, cap_template, signed_headers
from notices.approval import notice_approve
from notices.models import Notice, Status
from notices.testing import current_code

APP_KEY = "ding-demo-wsd"
ALERT = CapInfoSpec(
    language="en-HK",
    event="Flooding",
    headline="Flooding in Sha Tin",
    description="Roads near the Shing Mun River are flooded.",
    areas=("Sha Tin",),
)
ALERT_ZH = CapInfoSpec(
    language="zh-HK",
    event="水浸",
    headline="沙田水浸",
    description="城門河附近道路水浸。",
    areas=("沙田",),
)


@pytest.fixture
def sim(settings):
    with running_simulator(directory_size=300, time_scale=0) as dt:
        settings.DINGTALK_BASE_URL = dt.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        cache.clear()
        yield dt


def _post(client, caller, body: bytes):
    return client.post(
        reverse("api:cap", kwargs={"integration": caller.integration.slug}),
        data=body,
        content_type="application/cap+xml",
        **signed_headers(caller.secret, body),
    )


@pytest.mark.django_db
def test_a_cancel_after_sending_is_recalled_once_a_supervisor_confirms(
    sim, cast_a, cast_b, verified_client, django_capture_on_commit_callbacks
):
    app = next(a for a in sim.apps if a.code == "WSD")
    department = connect_department(cast_a.department, app)
    make_recipients(department, 20, start=100)
    integration, secret = callers.integration_create(
        actor=cast_a.system_admin,
        department=department,
        name="Drainage alerts",
        cap_template=cap_template(department),
    )
    caller = type("Caller", (), {"integration": integration, "secret": secret})
    client = verified_client(cast_a.supervisor)
    with django_capture_on_commit_callbacks(execute=True):
        created = _post(client, caller, cap_alert_xml(identifier="DSD-1", infos=(ALERT, ALERT_ZH)))
    notice = Notice.objects.get(pk=created.json()["notice_id"])
    for supervisor in (cast_a.supervisor, cast_a.supervisor2):
        with django_capture_on_commit_callbacks(execute=True):
            notice = notice_approve(
                actor=supervisor,
                notice=notice,
                version_hash=notice.version_hash,
                totp_token=current_code(supervisor),
                reach_acknowledged=True,
            )
    sim.sim.advance(5)
    notice.refresh_from_db()
    assert notice.status == Status.SENT
    assert len(sim.sim.inbox("wsd0000100", APP_KEY)) == 1

    cancel = cap_alert_xml(
        identifier="DSD-1-C",
        msg_type="Cancel",
        references="alerts@example.gov.hk,DSD-1,2026-11-27T10:00:00+08:00",
    )
    response = _post(client, caller, cancel)
    assert response.json()["cancellations"] == [{"notice_id": notice.pk, "state": "awaiting"}]
    request = CancellationRequest.objects.get()

    # The recalls page: waiting for this department's supervisors only.
    page = client.get(reverse("integrations:recalls"))
    assert f"#{notice.pk}" in page.content.decode()
    other = verified_client(cast_b.supervisor)
    assert f"#{notice.pk}" not in other.get(reverse("integrations:recalls")).content.decode()
    assert (
        other.post(
            reverse("integrations:recall-decide", args=[request.pk]), {"decision": "recall"}
        ).status_code
        == 403
    )
    with django_capture_on_commit_callbacks(execute=True):
        decided = client.post(
            reverse("integrations:recall-decide", args=[request.pk]), {"decision": "recall"}
        )
    assert decided.status_code == 302
    request.refresh_from_db()
    assert request.state == CancellationState.CONFIRMED
    assert request.decided_by == cast_a.supervisor
    sim.sim.advance(5)
    assert sim.sim.inbox("wsd0000100", APP_KEY)[0]["recalled"] is True
    assert AuditEvent.objects.filter(
        action="integrations.cancellation_confirmed", actor=cast_a.supervisor
    ).exists()
    # A second decision is refused with a message, not an error page.
    again = client.post(
        reverse("integrations:recall-decide", args=[request.pk]),
        {"decision": "dismiss"},
        follow=True,
    )
    assert "already decided" in again.content.decode()
