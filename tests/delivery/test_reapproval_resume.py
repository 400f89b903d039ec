"""The send-time check on resume: a paused plan whose notice's audience changed meanwhile sends
nothing, the notice goes back for approval, and the new approval resumes the plan."""

from __future__ import annotations

from collections import Counter

import pytest

from audiences import services as audience_services
from audiences.models import Segment, SubscriptionFilter
from audiences.services import SegmentInput
from audit.context import AuditContext, audit_context
from audit.models import AuditEvent
from common.errors import ApplicationError
from delivery.models import Delivery, DeliveryPlan, PlanStatus
from delivery.services import lifecycle, planner
from delivery.services.lifecycle import APPROVAL_VOIDED
from delivery.testing import (
    connect_demo_app,
    make_notice,
    make_recipients,
    stopped_clock_simulator,
)
from notices import approval
from notices.models import Status, Tier
from notices.testing import current_code


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=400) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    return connect_demo_app(cast_a.department, sim, "WSD")


def approve(user, notice):
    notice.refresh_from_db()
    with audit_context(AuditContext(otp_verified=True)):
        return approval.notice_approve(
            actor=user,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token=current_code(user),
            reach_acknowledged=True,
        )


@pytest.mark.django_db
def test_resume_after_the_audience_changed_waits_for_a_new_approval(
    sim, wsd, cast_a, settings, django_capture_on_commit_callbacks
) -> None:
    settings.NOTICES_TWO_APPROVER_AUDIENCE = 100
    make_recipients(wsd, 150, languages=("en",))
    good_ref = wsd.dingtalk_secret_ref
    wsd.dingtalk_secret_ref = "env:DELIVERY_TEST_SECRET_ABSENT"
    wsd.save()
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.status == PlanStatus.PAUSED
    wsd.dingtalk_secret_ref = good_ref
    wsd.save()
    # While paused, the segment is redefined (nobody waits on it, so only resume can tell).
    segment = Segment.objects.get(notices=notice)
    audience_services.segment_update(
        actor=cast_a.department_admin,
        segment=segment,
        data=SegmentInput(name=segment.name, subscription=SubscriptionFilter.ANY),
    )
    with pytest.raises(ApplicationError) as caught:
        lifecycle.plan_resume(actor=cast_a.supervisor, plan_id=plan.pk)
    assert caught.value.code == APPROVAL_VOIDED
    plan.refresh_from_db()
    notice.refresh_from_db()
    assert plan.status == PlanStatus.PAUSED
    assert plan.pause_code == APPROVAL_VOIDED
    assert notice.status == Status.SUBMITTED
    assert AuditEvent.objects.filter(
        action="notices.returned_for_approval", data__code="changed_at_send"
    ).exists()
    assert sim.sim.counters()["calls"].get("asyncsend_v2", 0) == 0
    # Neither a person nor the sweeper can resume it before the new approval.
    with pytest.raises(ApplicationError):
        lifecycle.plan_resume(actor=cast_a.supervisor, plan_id=plan.pk)
    assert lifecycle.plan_resume(actor=None, plan_id=plan.pk) == 0
    approve(cast_a.supervisor, notice)
    with django_capture_on_commit_callbacks(execute=True):
        approve(cast_a.supervisor2, notice)
    plan.refresh_from_db()
    notice.refresh_from_db()
    assert plan.status == PlanStatus.DONE
    assert notice.status == Status.SENT
    userids = list(Delivery.objects.filter(plan=plan).values_list("dingtalk_user_id", flat=True))
    sim.sim.advance(5)
    assert Counter(len(sim.sim.inbox(u, "ding-demo-wsd")) for u in userids) == Counter({1: 150})
