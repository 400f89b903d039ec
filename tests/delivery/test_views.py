"""Dashboard, its JSON, the department summary and the scope of every delivery page."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.utils import timezone

from delivery.models import Batch, DeliveryPlan, PauseCode
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
