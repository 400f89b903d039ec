"""The rate governor: shared limits, monthly quota, pauses, fail-closed."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.test import override_settings

from delivery.governor import (
    DatabaseGovernor,
    GovernorUnavailable,
    RedisGovernor,
    content_fingerprint,
)
from delivery.quota import monthly_calls_left, monthly_calls_used

LIMITS = {
    **settings.DELIVERY_LIMITS,
    "calls_per_second": 3,
    "recipients_per_minute": 250,
    "urgent_reserve": 50,
}


@pytest.fixture(params=["db", "redis"])
def governor(request, db):
    if request.param == "db":
        gov = DatabaseGovernor()
        yield gov
        return
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        pytest.skip("Redis governor needs CELERY_BROKER_URL=redis://... (CI sets it)")
    gov = RedisGovernor(url, f"test-governor-{uuid.uuid4().hex}:")
    yield gov
    gov.reset()


@override_settings(DELIVERY_LIMITS=LIMITS)
def test_calls_per_second_are_limited_per_api(governor) -> None:
    decisions = [governor.acquire(app_key="a", api="asyncsend_v2") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].reason == "calls_per_second"
    assert 0 < decisions[-1].wait_s <= 1.0 + LIMITS["call_window_margin_s"]
    # Another API has its own per-second budget.
    assert governor.acquire(app_key="a", api="getsendresult").allowed


@override_settings(DELIVERY_LIMITS=LIMITS, DELIVERY_GOVERNOR_TIME_SCALE=10.0)
def test_recipients_per_minute_are_limited_per_app(governor) -> None:
    assert governor.acquire(app_key="a", api="asyncsend_v2", recipients=100).allowed
    assert governor.acquire(app_key="a", api="asyncsend_v2", recipients=100).allowed
    refused = governor.acquire(app_key="b", api="asyncsend_v2", recipients=100)
    assert refused.allowed  # another app
    over = governor.acquire(app_key="a", api="asyncsend_v2", recipients=100)
    assert not over.allowed
    assert over.reason == "recipients_per_minute"


def test_the_monthly_quota_counts_metered_calls_only(governor, cast_a) -> None:
    department = cast_a.department
    department.dingtalk_app_key = f"ding-quota-{uuid.uuid4().hex[:6]}"
    for _ in range(3):
        assert governor.acquire(app_key=department.dingtalk_app_key, api="asyncsend_v2").allowed
    governor.acquire(app_key=department.dingtalk_app_key, api="user_list")
    assert governor.monthly_used(app_key=department.dingtalk_app_key) == 3


@override_settings(DELIVERY_GOVERNOR_URL="db")
def test_quota_functions_read_the_governor(cast_a) -> None:
    department = cast_a.department
    department.dingtalk_app_key = "ding-demo-wsd"
    DatabaseGovernor().acquire(app_key="ding-demo-wsd", api="asyncsend_v2")
    assert monthly_calls_used(department) == 1
    assert monthly_calls_left(department) == 4_999
    department.dingtalk_edition = "professional"
    assert monthly_calls_left(department) == 199_999


def test_the_monthly_quota_refuses_when_used_up(db) -> None:
    from delivery.governor import month_key
    from delivery.models import GovernorCounter

    GovernorCounter.objects.create(key=f"month:full:{month_key()}", value=5_000)
    decision = DatabaseGovernor().acquire(app_key="full", api="asyncsend_v2")
    assert not decision.allowed
    assert decision.reason == "monthly_quota"


def test_a_pause_stops_every_worker_of_the_app(governor) -> None:
    governor.pause(app_key="a", seconds=5)
    decision = governor.acquire(app_key="a", api="asyncsend_v2")
    assert not decision.allowed
    assert decision.reason == "paused"
    assert governor.acquire(app_key="b", api="asyncsend_v2").allowed


def test_the_redis_governor_fails_closed_when_redis_is_down() -> None:
    dead = RedisGovernor("redis://127.0.0.1:1/0", "x:")
    with pytest.raises(GovernorUnavailable):
        dead.acquire(app_key="a", api="asyncsend_v2", recipients=10)
    assert not dead.healthy()


def test_content_fingerprint_ignores_key_order() -> None:
    assert content_fingerprint({"a": 1, "b": "x"}) == content_fingerprint({"b": "x", "a": 1})
    assert content_fingerprint({"a": 1}) != content_fingerprint({"a": 2})


@override_settings(DELIVERY_LIMITS=LIMITS)
def test_acquire_many_grants_the_prefix_that_fits_the_calls_per_second(governor) -> None:
    grant = governor.acquire_many(app_key="a", api="asyncsend_v2", recipients=[1, 1, 1, 1, 1])
    assert grant.granted == 3
    assert grant.reason == "calls_per_second"
    assert 0 < grant.wait_s <= 1.0 + LIMITS["call_window_margin_s"]
    # The three granted calls are in the window: the next one waits.
    assert not governor.acquire(app_key="a", api="asyncsend_v2").allowed


@override_settings(DELIVERY_LIMITS=LIMITS, DELIVERY_GOVERNOR_TIME_SCALE=10.0)
def test_acquire_many_stops_at_the_recipient_budget(governor) -> None:
    grant = governor.acquire_many(app_key="a", api="asyncsend_v2", recipients=[100, 100, 100])
    assert grant.granted == 2  # 250 a minute: the third call's 100 would overshoot
    assert grant.reason == "recipients_per_minute"
    assert grant.wait_s > 0
    over = governor.acquire(app_key="a", api="asyncsend_v2", recipients=60)
    assert not over.allowed  # 200 used + 60 > 250
    assert governor.acquire(app_key="a", api="asyncsend_v2", recipients=50).allowed


def test_acquire_many_never_grants_past_the_monthly_quota(governor, cast_a) -> None:
    app_key = f"ding-quota-many-{uuid.uuid4().hex[:6]}"
    for _ in range(4):
        assert governor.acquire(app_key=app_key, api="getsendresult").allowed
    with override_settings(
        DELIVERY_LIMITS={**LIMITS, "calls_per_second": 100},
        DELIVERY_EDITION_QUOTAS={"standard": 6, "professional": 200_000},
    ):
        grant = governor.acquire_many(
            app_key=app_key, api="getsendprogress", recipients=[0, 0, 0, 0]
        )
    assert grant.granted == 2
    assert grant.reason == "monthly_quota"
    assert governor.monthly_used(app_key=app_key) == 6


@override_settings(DELIVERY_LIMITS=LIMITS, DELIVERY_GOVERNOR_TIME_SCALE=60.0)
def test_a_refused_call_still_lets_expired_recipients_go(governor) -> None:
    """The recipient window's total must drop with the entries a refused decision trimmed."""
    import time

    started = time.monotonic()
    assert governor.acquire(app_key="a", api="asyncsend_v2", recipients=100).allowed
    time.sleep(0.5)
    assert governor.acquire(app_key="a", api="asyncsend_v2", recipients=100).allowed
    time.sleep(max(0.0, 1.1 - (time.monotonic() - started)))  # the first 100 have expired
    refused = governor.acquire(app_key="a", api="asyncsend_v2", recipients=200)
    assert not refused.allowed  # 100 in the window + 200 > 250
    # 100 in the window + 150 = 250: fits, although the refused call trimmed the first entry.
    assert governor.acquire(app_key="a", api="asyncsend_v2", recipients=150).allowed
    assert time.monotonic() - started < 1.5, "too slow to test the window (machine overloaded)"


def redis_governor() -> RedisGovernor:
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        pytest.skip("Redis governor needs CELERY_BROKER_URL=redis://... (CI sets it)")
    return RedisGovernor(url, f"test-governor-{uuid.uuid4().hex}:")


def recorded_sends(department, sizes, *, ago_s: float, attempts: int = 1, polls: int = 0):
    """Accepted batches of a sent notice, as the outbox records them."""
    from datetime import timedelta

    from django.utils import timezone

    from delivery.models import Batch, BatchStatus, DeliveryPlan, Dispatch
    from delivery.testing import make_notice

    notice = make_notice(department)
    plan = DeliveryPlan.objects.create(
        notice=notice, department=department, strategy="userid_batches", status="sending"
    )
    dispatch = Dispatch.objects.create(plan=plan, language="en", message={}, content_hash="x")
    at = timezone.now() - timedelta(seconds=ago_s)
    Batch.objects.bulk_create(
        Batch(
            dispatch=dispatch,
            seq=i,
            userids=["x"] * size,
            size=size,
            status=BatchStatus.ACCEPTED,
            task_id=1000 + i,
            attempts=attempts,
            polls_done=polls,
            claimed_at=at,
            accepted_at=at,
        )
        for i, size in enumerate(sizes)
    )


@override_settings(DELIVERY_LIMITS=LIMITS)
def test_a_governor_that_lost_its_store_rebuilds_windows_and_month_from_the_database(
    cast_a,
) -> None:
    governor = redis_governor()
    department = cast_a.department
    department.dingtalk_app_key = f"ding-lost-{uuid.uuid4().hex[:6]}"
    department.save()
    # 200 people sent 10 s ago (the window holds 250), in calls claimed twice and polled once.
    recorded_sends(department, [100, 100], ago_s=10, attempts=2, polls=1)
    app = department.dingtalk_app_key
    try:
        # No epoch: the store's state is lost; it is rebuilt before anything is granted.
        over = governor.acquire(app_key=app, api="asyncsend_v2", recipients=100)
        assert not over.allowed
        assert over.reason == "recipients_per_minute"
        assert governor.monthly_used(app_key=app) == 2 * 2 + 2 * 1
        assert governor.acquire(app_key=app, api="asyncsend_v2", recipients=50).allowed
        assert governor.monthly_used(app_key=app) == 7
        # A restart without persistence: every key gone, epoch included.
        governor.reset()
        assert not governor.acquire(app_key=app, api="asyncsend_v2", recipients=100).allowed
        assert governor.monthly_used(app_key=app) == 6
    finally:
        governor.reset()


@override_settings(DELIVERY_LIMITS={**LIMITS, "calls_per_second": 10})
def test_a_claimed_batch_counted_by_a_rebuild_is_not_counted_again_when_it_asks(cast_a) -> None:
    from delivery.models import Batch, BatchStatus

    governor = redis_governor()
    department = cast_a.department
    department.dingtalk_app_key = f"ding-claim-{uuid.uuid4().hex[:6]}"
    department.save()
    recorded_sends(department, [100, 100], ago_s=5)
    claimed = list(Batch.objects.filter(dispatch__plan__department=department).order_by("seq"))
    Batch.objects.filter(pk__in=[b.pk for b in claimed]).update(
        status=BatchStatus.CLAIMED, accepted_at=None
    )
    app = department.dingtalk_app_key
    try:
        # The rebuild counts both claimed batches as sent now (a call may be under way): the
        # window holds 200 of 250, so a third batch of 100 must wait...
        other = governor.acquire_many(
            app_key=app, api="asyncsend_v2", recipients=[100], claims=[999_999]
        )
        assert (other.granted, other.reason) == (0, "recipients_per_minute")
        # ...but the first claimed batch asking for its grant had no call under way: its
        # stand-in leaves the window and its grant takes the place, not a second 100.
        first = governor.acquire_many(
            app_key=app, api="asyncsend_v2", recipients=[100], claims=[claimed[0].pk]
        )
        assert first.granted == 1
        assert governor.acquire(app_key=app, api="asyncsend_v2", recipients=50).allowed
        assert not governor.acquire(app_key=app, api="asyncsend_v2", recipients=1).allowed
    finally:
        governor.reset()


@override_settings(DELIVERY_LIMITS=LIMITS)
def test_while_another_process_rebuilds_nothing_is_granted(cast_a) -> None:
    governor = redis_governor()
    try:
        governor._redis.set(governor._key("rebuild-lock"), "1", ex=30)
        decision = governor.acquire(app_key="a", api="asyncsend_v2", recipients=1)
        assert not decision.allowed
        assert decision.reason == "rebuilding"
        with pytest.raises(GovernorUnavailable):
            governor.monthly_used(app_key="a")
        governor._redis.delete(governor._key("rebuild-lock"))
        assert governor.acquire(app_key="a", api="asyncsend_v2", recipients=1).allowed
    finally:
        governor.reset()


@override_settings(DELIVERY_LIMITS=LIMITS)
def test_while_an_urgent_notice_sends_the_app_s_bulk_sends_wait(governor) -> None:
    if isinstance(governor, RedisGovernor):
        # A fresh store rebuilds its (empty) windows from the database first.
        assert governor.acquire(app_key="warm", api="asyncsend_v2").allowed
    bulk = governor.acquire_many(app_key="a", api="asyncsend_v2", recipients=[10], urgent=False)
    assert bulk.granted == 1
    urgent = governor.acquire_many(app_key="a", api="asyncsend_v2", recipients=[10], urgent=True)
    assert urgent.granted == 1
    held = governor.acquire_many(app_key="a", api="asyncsend_v2", recipients=[10], urgent=False)
    assert held.granted == 0
    assert held.reason == "urgent_first"
    assert 0 < held.wait_s <= 2.0
    # Another app's bulk, and this app's receipt polls, go on.
    assert governor.acquire_many(app_key="b", api="asyncsend_v2", recipients=[10], urgent=False)
    assert governor.acquire_many(app_key="a", api="getsendresult", recipients=[0]).granted == 1


@override_settings(DELIVERY_LIMITS=LIMITS)
def test_an_urgent_send_waiting_for_budget_keeps_bulk_waiting_as_long(governor) -> None:
    if isinstance(governor, RedisGovernor):
        assert governor.acquire(app_key="warm", api="asyncsend_v2").allowed
    assert governor.acquire_many(
        app_key="a", api="asyncsend_v2", recipients=[200], urgent=False
    ).granted
    # The minute's 250 and the urgent margin of 50 are nearly used: the urgent call waits...
    urgent = governor.acquire_many(app_key="a", api="asyncsend_v2", recipients=[150], urgent=True)
    assert urgent.granted == 0
    assert urgent.reason == "recipients_per_minute"
    # ...and the bulk call that would fit now waits at least as long: the budget is urgent's.
    held = governor.acquire_many(app_key="a", api="asyncsend_v2", recipients=[10], urgent=False)
    assert held.granted == 0
    assert held.reason == "urgent_first"
    assert held.wait_s >= urgent.wait_s


@override_settings(DELIVERY_LIMITS={**LIMITS, "calls_per_second": 10})
def test_urgent_sends_use_the_margin_above_the_bulk_ceiling(governor) -> None:
    if isinstance(governor, RedisGovernor):
        assert governor.acquire(app_key="warm", api="asyncsend_v2").allowed
    # Bulk keeps the whole ceiling of 250 people a minute...
    assert (
        governor.acquire_many(
            app_key="a", api="asyncsend_v2", recipients=[100, 100, 50, 10], urgent=False
        ).granted
        == 3
    )
    # ...and an urgent call takes the 50 above it at once, but not one more.
    assert (
        governor.acquire_many(
            app_key="a", api="asyncsend_v2", recipients=[50, 1], urgent=True
        ).granted
        == 1
    )
    refused = governor.acquire_many(app_key="a", api="asyncsend_v2", recipients=[1], urgent=True)
    assert (refused.granted, refused.reason) == (0, "recipients_per_minute")


def test_the_call_window_adds_real_seconds_a_sped_up_clock_does_not_shrink() -> None:
    from delivery.governor import api_window_s

    limits = {"call_window_margin_s": 0.05}
    assert api_window_s(limits, 1.0) == pytest.approx(1.05)
    # At twelve times, DingTalk's second is 83 ms of ours; a call's lateness is not scaled.
    assert api_window_s(limits, 12.0) == pytest.approx(1 / 12 + 0.05)


def test_the_urgent_margin_never_passes_dingtalks_minute() -> None:
    from delivery.governor import urgent_reserve

    assert urgent_reserve({"recipients_per_minute": 4_900, "urgent_reserve": 500}) == 100
    assert urgent_reserve({"recipients_per_minute": 5_000, "urgent_reserve": 100}) == 0
    assert urgent_reserve({"recipients_per_minute": 250, "urgent_reserve": 50}) == 50


@override_settings(DELIVERY_LIMITS=LIMITS)
def test_an_urgent_send_out_of_quota_does_not_hold_bulk_sends_back(governor) -> None:
    from delivery.governor import month_key
    from delivery.models import GovernorCounter

    if isinstance(governor, RedisGovernor):
        assert governor.acquire(app_key="warm", api="asyncsend_v2").allowed
        governor._redis.set(governor._key("month", "a", month_key()), 5_000)
    else:
        GovernorCounter.objects.create(key=f"month:a:{month_key()}", value=5_000)
    urgent = governor.acquire_many(app_key="a", api="asyncsend_v2", recipients=[10], urgent=True)
    assert urgent.reason == "monthly_quota"
    # Bulk meets the quota itself, not an hour of waiting behind the urgent notice.
    bulk = governor.acquire_many(app_key="a", api="asyncsend_v2", recipients=[10], urgent=False)
    assert bulk.reason == "monthly_quota"
