"""Dashboard, its JSON, the department summary and the scope of every delivery page."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from delivery.models import Batch, Delivery, DeliveryPlan, DeliveryState, PauseCode
from delivery.reach import plan_reach
from delivery.services import lifecycle, planner, receipts
from delivery.testing import connect_department, make_notice, make_recipients
from dingtalk.simulator.testing import running_simulator
from notices.models import Tier


@pytest.fixture
def sent(settings, cast_a):
    with running_simulator(directory_size=200, time_scale=0) as dt:
        settings.DINGTALK_BASE_URL = dt.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        cache.clear()
        wsd = connect_department(cast_a.department, next(a for a in dt.apps if a.code == "WSD"))
        make_recipients(wsd, 150)
        notice = make_notice(wsd, tier=Tier.TARGETED)
        planner.plan_notice(notice.pk)
        dt.sim.advance(120)
        for batch in Batch.objects.filter(dispatch__plan__notice=notice):
            for userid in batch.userids[:50]:
                dt.sim.mark_read(batch.task_id, userid)
            Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
            receipts.batch_poll_receipts(batch.pk)
        yield notice


@pytest.mark.django_db
def test_the_dashboard_shows_progress_curve_districts_and_reference(
    sent, cast_a, verified_client
) -> None:
    client = verified_client(cast_a.pr_officer)
    page = client.get(f"/delivery/notices/{sent.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="bar-read"' in html
    assert 'id="curve-line"' in html
    assert "99.6%" in html
    assert "style=" not in html
    data = client.get(f"/delivery/notices/{sent.pk}/status.json").json()
    assert data["planned"] == 150
    assert data["accepted"] == 150
    assert 0 < data["read"] <= 150
    assert data["reach_rate"] == pytest.approx(data["read"] * 100 / 150, abs=0.1)
    assert data["curve"]["median_first_read_min"] is not None
    assert sum(row["planned"] for row in data["districts"]) == 150


@pytest.mark.django_db
def test_everyone_watching_a_plan_shares_one_computation_a_second(
    sent, cast_a, cast_b, verified_client, settings
) -> None:
    settings.DELIVERY_DASHBOARD_CACHE_S = 1
    cache.clear()
    url = f"/delivery/notices/{sent.pk}/status.json"
    first = verified_client(cast_a.pr_officer).get(url).json()
    supervisor = verified_client(cast_a.supervisor)
    with CaptureQueriesContext(connection) as queries:
        shared = supervisor.get(url).json()
    assert shared == first
    assert not [q for q in queries.captured_queries if "delivery_plantally" in q["sql"]]
    # Each language has its own figures (labels, district names); the permission check stays
    # with each request.
    chinese = supervisor.get(url, HTTP_ACCEPT_LANGUAGE="zh-hant").json()
    assert chinese["status_label"] != first["status_label"]
    assert verified_client(cast_b.supervisor).get(url).status_code == 404
    # A second later the figures are computed again: a read recorded meanwhile shows.
    unread = Delivery.objects.filter(plan__notice=sent, state=DeliveryState.UNREAD)
    updated = Delivery.objects.filter(pk__in=list(unread.values_list("pk", flat=True)[:5])).update(
        state=DeliveryState.READ, first_read_at=timezone.now()
    )
    assert updated == 5
    assert supervisor.get(url).json()["read"] == first["read"]
    with time_machine.travel(timezone.now() + timedelta(seconds=2), tick=False):
        assert supervisor.get(url).json()["read"] > first["read"]


@pytest.mark.django_db
def test_another_department_gets_404(sent, cast_b, verified_client) -> None:
    client = verified_client(cast_b.supervisor)
    assert client.get(f"/delivery/notices/{sent.pk}/").status_code == 404
    assert client.get(f"/delivery/notices/{sent.pk}/status.json").status_code == 404
    assert client.post(f"/delivery/notices/{sent.pk}/recall/", {"reason": "x"}).status_code == 404


@pytest.mark.django_db
def test_the_summary_lists_department_totals(sent, cast_a, verified_client) -> None:
    page = verified_client(cast_a.auditor).get("/delivery/")
    assert page.status_code == 200
    assert b"Delivery summary" in page.content
    assert sent.title.encode() in page.content
    assert verified_client(cast_a.system_admin).get("/delivery/").status_code == 404


@pytest.mark.django_db
def test_a_supervisor_recalls_from_the_dashboard(
    sent, cast_a, verified_client, django_capture_on_commit_callbacks
) -> None:
    officer = verified_client(cast_a.pr_officer)
    assert b"delivery-recall" not in officer.get(f"/delivery/notices/{sent.pk}/").content
    officer.post(f"/delivery/notices/{sent.pk}/recall/", {"reason": "x"})
    assert DeliveryPlan.objects.get(notice=sent).recalled_at is None
    supervisor = verified_client(cast_a.supervisor)
    with django_capture_on_commit_callbacks(execute=True):
        response = supervisor.post(f"/delivery/notices/{sent.pk}/recall/", {"reason": "Wrong area"})
    assert response.status_code == 302
    assert DeliveryPlan.objects.get(notice=sent).status == "recalled"


@pytest.mark.django_db
def test_a_supervisor_resumes_a_paused_notice_and_reads_why_it_paused(
    sent, cast_a, verified_client, django_capture_on_commit_callbacks
) -> None:
    DeliveryPlan.objects.filter(notice=sent).update(
        status="paused", pause_code=PauseCode.QUOTA_EXHAUSTED, pause_reason=lifecycle.QUOTA_USED_UP
    )
    officer = verified_client(cast_a.pr_officer)
    assert b"delivery-resume" not in officer.get(f"/delivery/notices/{sent.pk}/").content
    assert officer.post(f"/delivery/notices/{sent.pk}/resume/").status_code == 404
    assert DeliveryPlan.objects.get(notice=sent).status == "paused"
    supervisor = verified_client(cast_a.supervisor)
    page = supervisor.get(f"/delivery/notices/{sent.pk}/", HTTP_ACCEPT_LANGUAGE="zh-hant")
    html = page.content.decode()
    assert 'id="delivery-resume"' in html
    assert "本月的釘釘 API 配額已用完。" in html
    with django_capture_on_commit_callbacks(execute=True):
        response = supervisor.post(f"/delivery/notices/{sent.pk}/resume/")
    assert response.status_code == 302
    plan = DeliveryPlan.objects.get(notice=sent)
    assert plan.status == "done"
    assert plan.pause_reason == ""


@pytest.mark.django_db
def test_the_last_and_next_poll_are_the_plans_newest_and_soonest_batch(sent) -> None:
    plan = DeliveryPlan.objects.get(notice=sent)
    batches = Batch.objects.filter(dispatch__plan=plan).order_by("pk")
    soon = timezone.now() + timedelta(minutes=3)
    batches.update(next_poll_at=timezone.now() + timedelta(hours=1), receipts_done=False)
    Batch.objects.filter(pk=batches[1].pk).update(next_poll_at=soon)
    # A batch whose receipts are done is not due, however soon its stale time.
    Batch.objects.filter(pk=batches[0].pk).update(
        next_poll_at=soon - timedelta(minutes=2), receipts_done=True
    )
    newest = Batch.objects.filter(pk=batches[0].pk)
    newest.update(last_polled_at=timezone.now() + timedelta(minutes=1))
    figures = plan_reach(plan)
    assert figures["next_poll_at"] == soon.isoformat()
    assert figures["last_poll_at"] == newest.get().last_polled_at.isoformat()
