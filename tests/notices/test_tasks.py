"""Approver alerts: DingTalk work notification through the department's client, e-mail fallback."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEvent
from dingtalk.simulator.testing import running_simulator
from notices.models import Status
from notices.tasks import alert_approvers_task
from notices.testing import add_recipients, everyone_segment, submitted_notice, targeted_fields


@pytest.fixture
def simulator():
    with running_simulator(directory_size=20, time_scale=0) as dt:
        yield dt


@pytest.fixture
def wired(cast_a, simulator, settings, monkeypatch):
    """cast_a's department talks to the simulator's WSD app."""
    app = next(a for a in simulator.apps if a.code == "WSD")
    monkeypatch.setenv("DINGTALK_SECRET_WSD_NOTICES", app.app_secret)
    department = cast_a.department
    department.dingtalk_app_key = app.app_key
    department.dingtalk_agent_id = app.agent_id
    department.dingtalk_secret_ref = "env:DINGTALK_SECRET_WSD_NOTICES"
    department.save()
    settings.DINGTALK_BASE_URL = simulator.base_url
    add_recipients(department, 3)
    return app


def run_task(notice_id):
    # Eager Celery skips serialisation: round-trip the arguments as a broker would.
    (notice_id,) = json.loads(json.dumps([notice_id]))
    alert_approvers_task.delay(notice_id)


def test_supervisors_get_a_dingtalk_alert_once(cast_a, simulator, wired, mailoutbox):
    notice = submitted_notice(
        cast_a.pr_officer, cast_a.department, **targeted_fields(everyone_segment(cast_a.department))
    )
    run_task(notice.pk)
    run_task(notice.pk)  # a redelivered task sends nothing more
    simulator.sim.advance(60)  # the simulated phones receive within DingTalk's delivery delay
    for user in (cast_a.supervisor, cast_a.supervisor2):
        userid = user.memberships.get().dingtalk_user_id
        inbox = simulator.sim.inbox(userid, app_key=wired.app_key)
        assert len(inbox) == 1, userid
        assert "Approval needed" in json.dumps(inbox[0]["msg"], ensure_ascii=False)
    # The author is never alerted to approve their own notice.
    author_id = cast_a.pr_officer.memberships.get().dingtalk_user_id
    assert simulator.sim.inbox(author_id, app_key=wired.app_key) == []
    assert mailoutbox == []
    events = AuditEvent.objects.filter(action="notices.approvers_alerted", target_id=str(notice.pk))
    assert events.count() == 1
    assert sorted(events.get().data["dingtalk"]) == ["wsd.supervisor", "wsd.supervisor2"]


def test_dingtalk_refusal_falls_back_to_email(cast_a, simulator, wired, mailoutbox):
    notice = submitted_notice(
        cast_a.pr_officer, cast_a.department, **targeted_fields(everyone_segment(cast_a.department))
    )
    simulator.sim.inject("asyncsend_v2", errcode=40035, times=5)
    run_task(notice.pk)
    assert sorted(m for msg in mailoutbox for m in msg.to) == [
        "wsd.supervisor2@example.gov.hk",
        "wsd.supervisor@example.gov.hk",
    ]


def test_no_alert_once_the_notice_left_the_inbox(cast_a, simulator, wired, mailoutbox):
    from notices import services

    notice = submitted_notice(
        cast_a.pr_officer, cast_a.department, **targeted_fields(everyone_segment(cast_a.department))
    )
    services.notice_cancel(actor=cast_a.pr_officer, notice=notice, reason="Duplicate")
    run_task(notice.pk)
    notice.refresh_from_db()
    assert notice.status == Status.CANCELLED
    assert mailoutbox == []
    assert not AuditEvent.objects.filter(action="notices.approvers_alerted").exists()


def test_two_notices_with_the_same_title_both_reach_the_supervisors(cast_a, simulator, wired):
    # DingTalk drops identical content to the same person within a day; alerts must differ.
    fields = targeted_fields(everyone_segment(cast_a.department))
    first = submitted_notice(cast_a.pr_officer, cast_a.department, **fields)
    second = submitted_notice(cast_a.pr_officer, cast_a.department, **fields)
    assert first.title_en == second.title_en
    run_task(first.pk)
    run_task(second.pk)
    simulator.sim.advance(60)
    userid = cast_a.supervisor.memberships.get().dingtalk_user_id
    assert len(simulator.sim.inbox(userid, app_key=wired.app_key)) == 2
    assert simulator.sim.counters()["forbidden_total"] == 0
