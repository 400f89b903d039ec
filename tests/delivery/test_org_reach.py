"""Organisation-wide reach: a to_all_user send reaches the whole DingTalk organisation (counted
from the directory), portal recipient or not; it is chosen only when it reaches nobody who opted
out, unless the department's policy sends emergency broadcasts to every member."""

from __future__ import annotations

import io

import pytest
from django.utils import timezone

from audiences.membercount import count_members, member_counts, member_counts_store
from audiences.models import Recipient, SubscriptionState
from audit.models import AuditEvent
from delivery import reach
from delivery.audit_actions import DeliveryAuditAction
from delivery.models import Batch, DeliveryPlan
from delivery.services import planner, receipts
from delivery.testing import (
    connect_demo_app,
    count_directory,
    make_notice,
    make_recipients,
    stopped_clock_simulator,
)
from dingtalk.simulator.testing import running_simulator
from notices import approval
from notices.models import Tier
from notices.preflight import preflight, true_reach
from notices.testing import citywide_fields, current_code, submitted_notice

pytestmark = pytest.mark.django_db

ORGANISATION = 300  # the simulated directory: larger than the portal's 60 recipients
RECIPIENTS = 60


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=ORGANISATION) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    department = connect_demo_app(cast_a.department, sim, "WSD")
    make_recipients(department, RECIPIENTS)
    return department


def approve_both(cast, notice):
    for supervisor in (cast.supervisor, cast.supervisor2):
        notice.refresh_from_db()
        approval.notice_approve(
            actor=supervisor,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token=current_code(supervisor),
            reach_acknowledged=True,
        )


def test_member_counts_cover_each_department_and_everything_below() -> None:
    parents = {2: 1, 3: 1, 4: 2}
    total, by_dept = count_members([[4], [2, 4], [3], [1]], parents, 1)
    assert total == 4
    assert by_dept == {1: 4, 2: 2, 4: 2, 3: 1}


def test_org_wide_reach_is_the_organisation_on_every_page_and_in_the_task(
    cast_a, wsd, sim, django_capture_on_commit_callbacks
) -> None:
    assert count_directory(wsd, sim) == ORGANISATION
    counted = member_counts(wsd)
    assert counted is not None
    assert counted.counted_at is not None
    figures = preflight(
        department=wsd, tier="citywide", segments=[], languages=2, requires_confirmation=False
    )
    assert (figures["strategy"], figures["recipients"]) == ("org_wide", ORGANISATION)
    assert figures["reach_scope"] == "organisation"
    assert figures["portal_recipients"] == RECIPIENTS
    assert figures["beyond_recipients"] == ORGANISATION - RECIPIENTS
    notice = submitted_notice(cast_a.pr_officer, wsd, **citywide_fields())
    assert notice.reach == ORGANISATION  # the approvers' "reaches N people"
    assert approval.current_reach(notice) == ORGANISATION
    with django_capture_on_commit_callbacks(execute=False):
        approve_both(cast_a, notice)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert (plan.strategy, plan.reach, plan.reach_scope) == (
        "org_wide",
        ORGANISATION,
        "organisation",
    )
    started = AuditEvent.objects.get(action=DeliveryAuditAction.DISPATCH_STARTED)
    assert (started.data["reach"], started.data["reach_scope"]) == (ORGANISATION, "organisation")
    batch = Batch.objects.get(dispatch__plan=plan, to_all=True)
    from delivery.services import sender

    sender.batches_send([batch.pk])
    batch.refresh_from_db()
    assert sim.sim.task(batch.task_id).total_recipients == ORGANISATION


def test_org_reach_never_includes_someone_who_opted_out_unless_policy_says_so(wsd, sim) -> None:
    count_directory(wsd, sim)
    Recipient.objects.filter(pk=Recipient.objects.filter(department=wsd).first().pk).update(
        subscription_state=SubscriptionState.UNSUBSCRIBED
    )
    figures = preflight(
        department=wsd, tier="citywide", segments=[], languages=2, requires_confirmation=False,
        fresh=True,
    )  # fmt: skip
    assert (figures["strategy"], figures["recipients"]) == ("user_batches", RECIPIENTS - 1)
    assert figures["reach_scope"] == "recipients"
    wsd.broadcast_to_all_members = True
    wsd.save(update_fields=["broadcast_to_all_members"])
    figures = preflight(
        department=wsd, tier="citywide", segments=[], languages=2, requires_confirmation=False,
        fresh=True,
    )  # fmt: skip
    assert (figures["strategy"], figures["recipients"]) == ("org_wide", ORGANISATION)
    assert figures["all_members_policy"] is True


def test_org_reach_unknown_without_a_count_falls_back_to_batches(cast_a, wsd) -> None:
    notice = submitted_notice(cast_a.pr_officer, wsd, **citywide_fields())
    found = true_reach(notice)
    assert (found.strategy, found.count, found.scope) == ("user_batches", RECIPIENTS, "recipients")
    # Counted (by the sync or the member count): now the organisation is what it reaches.
    member_counts_store(wsd, 500, {}, timezone.now())
    found = true_reach(notice)
    assert (found.strategy, found.count, found.scope) == ("org_wide", 500, "organisation")
    assert not found.per_person_reads
    assert reach.reach_for(wsd, strategy="user_batches", portal_recipients=7).count == 7


def test_org_reach_never_uses_one_call_for_an_organisation_past_5000(cast_a, wsd) -> None:
    notice = submitted_notice(cast_a.pr_officer, wsd, **citywide_fields())
    member_counts_store(wsd, 5_000, {}, timezone.now())
    assert true_reach(notice).strategy == "org_wide"
    # One call reaches at most 5,000 people (and DingTalk takes 5,000 a minute): the rest
    # would be dropped, so a larger organisation is sent to in batches.
    member_counts_store(wsd, 21_000, {}, timezone.now())
    found = true_reach(notice)
    assert (found.strategy, found.count, found.scope) == ("user_batches", RECIPIENTS, "recipients")


def test_org_reach_dashboard_says_dingtalk_gives_no_per_person_reads(
    cast_a, wsd, sim, verified_client
) -> None:
    count_directory(wsd, sim)
    notice = make_notice(wsd, tier=Tier.CITYWIDE)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.strategy == "org_wide"
    batch = Batch.objects.get(dispatch__plan=plan, to_all=True)
    sim.sim.advance(60)
    Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
    receipts.batch_poll_receipts(batch.pk)
    client = verified_client(cast_a.pr_officer)
    data = client.get(f"/delivery/notices/{notice.pk}/status.json").json()
    assert (data["reach"], data["reach_scope"]) == (ORGANISATION, "organisation")
    assert data["per_person_reads"] is False
    assert data["send_progress"]["percent"] == 100  # what getsendprogress reported
    assert data["last_poll_at"] is not None
    html = client.get(f"/delivery/notices/{notice.pk}/").content.decode()
    assert 'id="delivery-no-reads"' in html
    assert "DingTalk reports no per-person reads" in html
    assert f'id="fig-reach">{ORGANISATION}<' in html
    assert "99.6%" not in html  # no reference comparison against a read rate of 0%
    assert 'id="fig-reach-rate"' not in html


def test_small_closed_loop_notices_poll_sooner_and_the_dashboard_shows_poll_times(
    cast_a, wsd, sim, verified_client
) -> None:
    notice = make_notice(wsd, tier=Tier.CLOSED_LOOP)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.fast_receipts
    batch = Batch.objects.filter(dispatch__plan=plan).first()
    assert (batch.next_poll_at - batch.accepted_at).total_seconds() == pytest.approx(30, abs=1)
    sim.sim.advance(60)
    Batch.objects.filter(dispatch__plan=plan).update(next_poll_at=timezone.now())
    for pk in Batch.objects.filter(dispatch__plan=plan).values_list("pk", flat=True):
        receipts.batch_poll_receipts(pk)
    batch.refresh_from_db()
    assert batch.polls_done == 1
    assert (batch.next_poll_at - batch.accepted_at).total_seconds() == pytest.approx(60, abs=1)
    data = verified_client(cast_a.pr_officer).get(f"/delivery/notices/{notice.pk}/status.json")
    figures = data.json()
    assert figures["per_person_reads"] is True
    assert figures["last_poll_at"] is not None
    assert figures["next_poll_at"] is not None
    html = verified_client(cast_a.pr_officer).get(f"/delivery/notices/{notice.pk}/").content
    assert b"Reads are seen when DingTalk is polled" in html
    # A targeted notice (or a large one) keeps DingTalk's schedule: first poll at +1 min.
    other = make_notice(wsd, tier=Tier.TARGETED, title="Other")
    planner.plan_notice(other.pk)
    assert not DeliveryPlan.objects.get(notice=other).fast_receipts


def test_count_directory_members_command_counts_the_organisation(cast_a, settings) -> None:
    from django.core.management import CommandError, call_command

    with running_simulator(
        directory_size=80, time_scale=0, limits={"per_app_api_calls_per_s": None}
    ) as dt:
        settings.DINGTALK_BASE_URL = dt.base_url
        settings.AUDIENCES_SYNC_CALLS_PER_SECOND = 1000
        connect_demo_app(cast_a.department, dt, "WSD")
        out = io.StringIO()
        call_command("count_directory_members", "WSD", stdout=out)
        assert out.getvalue().strip() == "WSD: 80 members"
        assert member_counts(cast_a.department).total == 80
        assert Recipient.objects.filter(department=cast_a.department).count() == 0  # untouched
        cast_a.department.dingtalk_secret_ref = "env:NO_SUCH_SECRET_FOR_TESTS"
        cast_a.department.save()
        with pytest.raises(CommandError):
            call_command(
                "count_directory_members", "WSD", stdout=io.StringIO(), stderr=io.StringIO()
            )
