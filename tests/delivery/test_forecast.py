"""The pre-flight forecasts every metered call a notice causes: sends, companion cards, uploads,
receipt polls on the schedule, reminders, approver alerts (and what a recall would add). The
demo's three kinds of notice run end to end against the simulator, through a day of receipt
polls and reminders, and the simulator's count of metered calls is within 10% of the forecast."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Membership, Role
from delivery import forecast, planning
from delivery.models import DeliveryPlan
from delivery.services import followup, receipts
from delivery.testing import (
    connect_demo_app,
    count_directory,
    make_recipients,
    sim_userid,
    stopped_clock_simulator,
)
from notices import approval, services
from notices.models import Tier
from notices.preflight import preflight
from notices.testing import citywide_fields, current_code, everyone_segment, targeted_fields

pytestmark = pytest.mark.django_db


def test_forecast_counts_polls_reminders_alerts_and_cards() -> None:
    calls = forecast.forecast(
        strategy=planning.Strategy.USER_BATCHES,
        by_language={"en": 150, "zh": 40},
        companion=True,
        media_uploads=1,
        reminders=2,
        approvers_alerted=3,
    )
    assert (calls.sends, calls.companion_cards, calls.uploads) == (3, 3, 1)
    assert calls.receipt_polls == 6 * len(planning.RECEIPT_POLL_OFFSETS_S)
    assert calls.reminders == 2 * 3
    assert calls.reminder_polls == 6 * len(planning.RECEIPT_POLL_OFFSETS_S)
    assert calls.approver_alerts == 1
    assert calls.recall == 12  # not in the total
    assert calls.total == 3 + 3 + 1 + 42 + 6 + 42 + 1
    broadcast = forecast.forecast(strategy=planning.Strategy.ORG_WIDE, by_language={"zh": 9})
    assert (broadcast.sends, broadcast.receipt_polls) == (1, forecast.PROGRESS_POLLS_PER_TASK)
    fast = forecast.forecast(
        strategy=planning.Strategy.PER_PERSON, by_language={"zh": 5}, fast_receipts=True
    )
    assert fast.receipt_polls == 5 * len(planning.FAST_RECEIPT_POLL_OFFSETS_S)


def drive_a_day(sim, start) -> None:
    """Receipt polls and reminders as beat would run them, over 23.5 hours of simulated time."""
    moments = [
        *(start + timedelta(seconds=s) for s in range(15, 300, 15)),
        *(start + timedelta(minutes=m) for m in range(5, 120, 5)),
        *(start + timedelta(minutes=m) for m in range(120, 23 * 60 + 31, 30)),
    ]
    last = start
    for moment in moments:
        sim.sim.advance((moment - last).total_seconds())
        last = moment
        followup.reminders_due_send(now=moment)
        for _ in range(20):
            due = receipts.receipts_due(now=moment)
            if not due:
                break
            for batch_id, lease in due:
                receipts.batch_poll_receipts(batch_id, now=moment, lease=lease)


def test_forecast_of_the_demo_flows_is_within_ten_percent_of_the_simulators_count(
    settings, cast_a, django_capture_on_commit_callbacks
) -> None:
    settings.DELIVERY_LIMITS = {**settings.DELIVERY_LIMITS, "calls_per_second": 1000}
    with stopped_clock_simulator(
        settings,
        directory_size=120,
        readers={"enabled": False},
        limits={"per_app_api_calls_per_s": None},
    ) as sim:
        wsd = connect_demo_app(cast_a.department, sim, "WSD")
        # Supervisors with DingTalk accounts: a submission alerts them through DingTalk.
        for n, user in enumerate((cast_a.supervisor, cast_a.supervisor2), start=1):
            Membership.objects.filter(user=user, role=Role.SUPERVISOR).update(
                dingtalk_user_id=sim_userid("WSD", n)
            )
        make_recipients(wsd, 60)
        count_directory(wsd, sim)
        segment = everyone_segment(wsd)
        flows = [
            # A citywide warning: one organisation-wide send.
            (citywide_fields(), 0),
            # A targeted notice with two reminders for whoever has not read it.
            (
                targeted_fields(
                    segment,
                    max_reminders=2,
                    remind_after_minutes=60,
                    remind_whom="unread",
                    title_en="Water off",
                ),
                2,
            ),
            # A closed-loop drill: a personal Confirm link each, one reminder.
            (
                targeted_fields(
                    segment,
                    tier=Tier.CLOSED_LOOP,
                    requires_confirmation=True,
                    max_reminders=1,
                    remind_after_minutes=30,
                    remind_whom="unconfirmed",
                    title_en="Drill",
                ),
                1,
            ),
        ]
        start = timezone.now()
        forecast_total = 0
        for fields, reminders in flows:
            figures = preflight(
                department=wsd,
                tier=fields["tier"],
                segments=fields.get("segments", []),
                languages=2,
                requires_confirmation=bool(fields.get("requires_confirmation")),
                kind=fields["kind"],
                reminders=reminders,
                fresh=True,
            )
            forecast_total += figures["calls_total"]
            with django_capture_on_commit_callbacks(execute=True):
                notice = services.notice_create(actor=cast_a.pr_officer, department=wsd, **fields)
                notice = services.notice_submit(actor=cast_a.pr_officer, notice=notice)
            for supervisor in (cast_a.supervisor, cast_a.supervisor2):
                notice.refresh_from_db()
                if notice.status != "submitted":
                    break
                # The same 30-second code again for the next notice (a test, not a replay).
                TOTPDevice.objects.filter(user=supervisor).update(last_t=-1)
                with django_capture_on_commit_callbacks(execute=True):
                    approval.notice_approve(
                        actor=supervisor,
                        notice=notice,
                        version_hash=notice.version_hash,
                        totp_token=current_code(supervisor),
                        reach_acknowledged=True,
                    )
            assert DeliveryPlan.objects.filter(notice=notice).exists()
        drive_a_day(sim, start)
        used = sim.sim.counters()["quota"]["ding-demo-wsd"]["used"]
    assert DeliveryPlan.objects.filter(reminders_sent__gt=0).count() == 2
    assert used > 100
    assert abs(forecast_total - used) <= 0.1 * used, (forecast_total, used)
