"""The pre-flight tells, before approval, what would stop the send: the app, pauses, daily caps."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse

from audiences.models import Segment
from common.testing.cast import verified_client_for
from delivery import readiness
from delivery.models import DeliveryPlan, PlanStatus
from delivery.services import lifecycle, planner
from delivery.testing import (
    connect_demo_app,
    make_notice,
    make_recipients,
    stopped_clock_simulator,
)
from notices.models import Status, Tier
from notices.testing import compose_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=100) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    return connect_demo_app(cast_a.department, sim, "WSD")


def gettoken_calls(sim) -> int:
    return int(sim.sim.counters()["calls"].get("gettoken", 0))


def everyone(department) -> Segment:
    return Segment.objects.get_or_create(
        department=department, name="Everyone subscribed (delivery tests)"
    )[0]


def preview(user, department, segment, **fields):
    data = compose_data(segment, **fields)
    response = verified_client_for(user).post(
        reverse("notices:preview", args=[department.code]), data
    )
    assert response.status_code == 200
    return response.json()["preflight"]


def test_a_working_app_raises_nothing_and_reuses_its_token(sim, wsd) -> None:
    assert readiness.send_problems(wsd) == []
    calls = gettoken_calls(sim)
    assert readiness.send_problems(wsd) == []
    assert gettoken_calls(sim) == calls  # the cached token: no call to DingTalk


def test_a_refused_secret_shows_on_the_compose_pre_flight_before_approval(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 5)
    segment = everyone(wsd)
    wsd.dingtalk_secret_ref = "env:READINESS_WRONG_SECRET"
    os.environ["READINESS_WRONG_SECRET"] = "not-the-secret"
    try:
        wsd.save()
        figures = preview(cast_a.pr_officer, wsd, segment)
        assert any("refused this department's app key or secret" in w for w in figures["warnings"])
        calls = gettoken_calls(sim)
        preview(cast_a.pr_officer, wsd, segment)  # typing on: remembered, not asked again
        assert gettoken_calls(sim) == calls
    finally:
        del os.environ["READINESS_WRONG_SECRET"]
    # A secret that cannot be read is named.
    wsd.dingtalk_secret_ref = "env:READINESS_ABSENT_SECRET"
    wsd.save()
    (problem,) = readiness.channel_problems(wsd)
    assert "READINESS_ABSENT_SECRET is not set" in problem


def test_a_department_without_an_app_is_told_so(cast_a, sim) -> None:
    department = cast_a.department
    department.dingtalk_app_key = ""
    department.save()
    (problem,) = readiness.channel_problems(department)
    assert "no DingTalk app key" in problem


def test_a_paused_notice_and_its_reason_show_on_the_next_pre_flight(sim, wsd) -> None:
    make_recipients(wsd, 5)
    notice = make_notice(wsd, tier=Tier.TARGETED, title="Mains burst")
    plan = planner.plan_start(notice.pk)
    assert plan is not None
    reason = "DingTalk refused the app (revoked, or a permission or IP whitelist is missing)."
    assert lifecycle.plan_pause(plan.pk, code="PermissionDenied", reason=reason)
    (problem,) = readiness.send_problems(wsd)
    assert "Mains burst" in problem
    assert reason in problem
    DeliveryPlan.objects.filter(pk=plan.pk).update(status=PlanStatus.DONE)
    assert readiness.send_problems(wsd) == []


def test_people_at_the_days_cap_are_counted_before_approval(sim, wsd, cast_a, settings) -> None:
    settings.DELIVERY_LIMITS = {**settings.DELIVERY_LIMITS, "per_person_daily": 1}
    make_recipients(wsd, 20, languages=("en",))
    segment = everyone(wsd)
    assert preview(cast_a.pr_officer, wsd, segment)["warnings"] == []
    first = make_notice(wsd, tier=Tier.TARGETED, title="First")
    planner.plan_notice(first.pk)
    warnings = preview(cast_a.pr_officer, wsd, segment)["warnings"]
    assert any(w.startswith("20 people of this audience") for w in warnings), warnings


def test_the_approver_sees_what_would_stop_the_send(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 5)
    notice = make_notice(wsd, tier=Tier.TARGETED, status=Status.SUBMITTED, title="Outage")
    page = verified_client_for(cast_a.supervisor).get(reverse("notices:detail", args=[notice.pk]))
    assert 'id="send-problems"' not in page.content.decode()
    wsd.dingtalk_secret_ref = "env:READINESS_ABSENT_SECRET"
    wsd.save()
    page = verified_client_for(cast_a.supervisor).get(reverse("notices:detail", args=[notice.pk]))
    html = page.content.decode()
    assert 'id="send-problems"' in html
    assert "READINESS_ABSENT_SECRET is not set" in html
