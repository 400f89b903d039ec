"""A withdrawn notice's confirmation link shows neither the text nor the button (issue 16)."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from delivery import messages
from delivery.models import Delivery, DeliveryPlan
from delivery.services import followup, planner
from delivery.testing import (
    connect_demo_app,
    make_notice,
    make_recipients,
    stopped_clock_simulator,
)
from notices.models import Notice, Status, Tier
from notices.testing import seal_approved

BODY = "Boil water before drinking in Sham Shui Po."


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=50, readers={"enabled": False}) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    return connect_demo_app(cast_a.department, sim, "WSD")


def _sent_link(wsd) -> tuple[DeliveryPlan, Delivery, str]:
    make_recipients(wsd, 3, languages=("en",))
    notice = make_notice(wsd, tier=Tier.CLOSED_LOOP, requires_confirmation=True)
    Notice.objects.filter(pk=notice.pk).update(body_en=BODY)
    seal_approved(Notice.objects.get(pk=notice.pk))  # approved as it now reads
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    person = Delivery.objects.filter(plan=plan).first()
    return plan, person, messages.confirm_token(person.pk)


def _assert_withdrawn(client, token: str) -> None:
    for response in (
        client.get(f"/delivery/c/{token}/"),
        client.post(f"/delivery/c/{token}/", {"latitude": "22.3", "longitude": "114.1"}),
    ):
        body = response.content.decode()
        assert response.status_code == 200
        assert "This notice was withdrawn" in body
        assert 'id="confirm-withdrawn"' in body
        assert BODY not in body
        assert "confirm-button" not in body
        assert "confirm-form" not in body


@pytest.mark.django_db
def test_a_recalled_notices_link_says_withdrawn_and_records_nothing(sim, wsd, cast_a, client):
    plan, person, token = _sent_link(wsd)
    assert BODY in client.get(f"/delivery/c/{token}/").content.decode()
    followup.notice_recall(actor=cast_a.supervisor, notice=plan.notice, reason="Wrong district")
    _assert_withdrawn(client, token)  # while recalling
    followup.plan_recall_calls(plan.pk)
    _assert_withdrawn(client, token)  # recalled
    person.refresh_from_db()
    assert person.confirmed_at is None
    assert not AuditEvent.objects.filter(action="delivery.confirmed").exists()


@pytest.mark.django_db
def test_a_cancelled_notices_link_says_withdrawn(sim, wsd, client):
    plan, person, token = _sent_link(wsd)
    Notice.objects.filter(pk=plan.notice_id).update(status=Status.CANCELLED)
    _assert_withdrawn(client, token)
    person.refresh_from_db()
    assert person.confirmed_at is None
