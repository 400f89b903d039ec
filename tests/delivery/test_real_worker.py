"""Real Celery workers on the real broker: SIGKILL mid-dispatch, injected faults, two workers.

The worker subprocesses share the test database (PostgreSQL: an in-memory SQLite database
cannot be shared with another process, so these tests skip there, saying so), the broker
(Redis; the file-system broker is racy under concurrent publishing, so they skip without it)
and the simulator, which is a real HTTP server. The simulator's inspection is the judge: every
recipient's phone shows the notice exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Max, Min
from django.utils import timezone

from audit.models import AuditEvent
from delivery.governor import RedisGovernor
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    PlanStatus,
    effective_state_in,
)
from delivery.services import uncertain
from delivery.testing import (
    WorkerEnv,
    connect_department,
    database_url,
    kill_worker,
    make_notice,
    make_recipients,
    publisher,
    start_worker,
)
from dingtalk.simulator.testing import running_simulator
from notices.models import Tier
from notices.testing import seal_approved

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

OPEN = (BatchStatus.QUEUED, BatchStatus.CLAIMED, BatchStatus.UNKNOWN)


@pytest.fixture
def worker_env(settings, tmp_path, transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip(
            "real-worker tests need a database another process can open: run them on "
            "PostgreSQL (DATABASE_URL), as CI does"
        )
    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        # The test settings' in-memory broker reaches no other process, and make run's
        # file-system one forgets a message once a worker takes it: neither gives a killed
        # worker's messages back, which is what these tests kill for.
        pytest.skip(
            "real-worker tests need Redis (CELERY_BROKER_URL=redis://...): no other broker "
            "here redelivers the messages of a killed worker"
        )
    settings.DELIVERY_GOVERNOR_URL = broker
    settings.DELIVERY_GOVERNOR_PREFIX = f"test-{uuid.uuid4().hex[:8]}:"
    return {
        "database_url": database_url(connection.settings_dict),
        "broker_url": broker,
        "governor_url": settings.DELIVERY_GOVERNOR_URL,
        "governor_prefix": settings.DELIVERY_GOVERNOR_PREFIX,
        "log": tmp_path / "worker.log",
    }


def make_env(worker_env, simulator_url, **extra):
    return WorkerEnv(
        database_url=worker_env["database_url"],
        simulator_url=simulator_url,
        broker_url=worker_env["broker_url"],
        governor_url=worker_env["governor_url"],
        governor_prefix=worker_env["governor_prefix"],
        **extra,
    )


def wait_for(predicate, timeout, sweep=None, every=2.0):
    deadline = time.monotonic() + timeout
    last_sweep = 0.0
    while time.monotonic() < deadline:
        if predicate():
            return True
        if sweep is not None and time.monotonic() - last_sweep > every:
            sweep()
            last_sweep = time.monotonic()
        time.sleep(0.2)
    return predicate()


def finished(notice):
    plan = DeliveryPlan.objects.filter(notice=notice).first()
    return (
        plan is not None
        and plan.status == PlanStatus.DONE
        and not Batch.objects.filter(dispatch__plan=plan, status__in=OPEN).exists()
    )


def assert_everyone_exactly_once(dt, notice, count):
    dt.sim.advance(30)
    userids = list(
        Delivery.objects.filter(plan__notice=notice).values_list("dingtalk_user_id", flat=True)
    )
    assert len(userids) == count
    per_person = Counter(len(dt.sim.inbox(u, "ding-demo-wsd")) for u in userids)
    assert per_person == Counter({1: count}), per_person
    assert not Delivery.objects.filter(
        effective_state_in((DeliveryState.QUEUED,)), plan__notice=notice
    ).exists()


def test_a_worker_killed_mid_dispatch_is_restarted_and_nobody_gets_it_twice(
    worker_env, cast_a
) -> None:
    with running_simulator(directory_size=2000, faults={"latency_s": 0.15}) as dt:
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, 1500, languages=("en",))
        notice = make_notice(wsd, tier=Tier.TARGETED)
        env = make_env(worker_env, dt.base_url)
        app = publisher(env)
        first = start_worker(env, name="first", log=worker_env["log"])
        try:
            app.send_task("delivery.plan_notice", args=[notice.pk], queue="send")
            assert wait_for(
                lambda: (
                    Batch.objects.filter(
                        dispatch__plan__notice=notice, status=BatchStatus.ACCEPTED
                    ).count()
                    >= 3
                ),
                40,
            ), worker_env["log"].read_text()[-3000:]
        finally:
            kill_worker(first)
        accepted_at_kill = Batch.objects.filter(
            dispatch__plan__notice=notice, status=BatchStatus.ACCEPTED
        ).count()
        assert accepted_at_kill < 15, "the kill came too late to test anything"
        second = start_worker(env, name="second", log=worker_env["log"])
        try:
            assert wait_for(
                lambda: finished(notice),
                50,
                sweep=lambda: app.send_task("delivery.sweep_dispatches", queue="urgent"),
            ), worker_env["log"].read_text()[-3000:]
        finally:
            kill_worker(second)
        assert_everyone_exactly_once(dt, notice, 1500)


def test_faults_during_dispatch_end_with_no_duplicate_and_no_loss(worker_env, cast_a) -> None:
    # The simulator's clock runs 30 times faster, and so do the governor's windows, so a
    # 5-minute IP ban and DingTalk's pauses pass in seconds.
    with running_simulator(
        directory_size=1500,
        time_scale=30,
        faults={"http_5xx_rate": 0.05, "timeout_hold_s": 11.0},
        limits={"ip_ban_s": 300.0},
    ) as dt:
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, 1200, languages=("en", "zh-hant"))
        notice = make_notice(wsd, tier=Tier.TARGETED)
        env = make_env(
            worker_env,
            dt.base_url,
            time_scale=30.0,
            extra={"DELIVERY_RECIPIENTS_WINDOW_S": "70"},
        )
        app = publisher(env)
        dt.sim.inject("asyncsend_v2", "timeout", times=1)
        dt.sim.inject("asyncsend_v2", "errcode", errcode=90018, times=3)
        worker = start_worker(env, name="faults", log=worker_env["log"])
        try:
            app.send_task("delivery.plan_notice", args=[notice.pk], queue="send")
            assert wait_for(
                lambda: Batch.objects.filter(
                    dispatch__plan__notice=notice, status=BatchStatus.ACCEPTED
                ).exists(),
                30,
            )
            dt.sim.revoke_tokens("ding-demo-wsd")
            dt.sim.inject("asyncsend_v2", "html_ban", times=1)
            assert wait_for(
                lambda: finished(notice),
                55,
                sweep=lambda: app.send_task("delivery.sweep_dispatches", queue="urgent"),
            ), worker_env["log"].read_text()[-3000:]
        finally:
            kill_worker(worker)
        counters = dt.sim.counters()
        assert counters["errcodes"].get("90018") == 3
        assert counters["errcodes"].get("1111") == 1  # the IP-ban page
        # The held answer (a read timeout) left one batch unknown; it was resent and reconciled.
        assert Batch.objects.filter(dispatch__plan__notice=notice, after_unknown=True).exists()
        assert_everyone_exactly_once(dt, notice, 1200)


def test_two_workers_stay_inside_the_platform_limits(worker_env, cast_a) -> None:
    # 6,000 people: more than a minute's 5,000, so the per-minute budget must hold them back.
    with running_simulator(directory_size=6500, time_scale=20) as dt:
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, 6000, languages=("en",))
        notice = make_notice(wsd, tier=Tier.TARGETED)
        env = make_env(
            worker_env,
            dt.base_url,
            time_scale=20.0,
            extra={"DELIVERY_RECIPIENTS_WINDOW_S": "63"},
        )
        app = publisher(env)
        workers = [start_worker(env, name=f"pair{i}", log=worker_env["log"]) for i in range(2)]
        try:
            app.send_task("delivery.plan_notice", args=[notice.pk], queue="send")
            assert wait_for(
                lambda: finished(notice),
                55,
                sweep=lambda: app.send_task("delivery.sweep_dispatches", queue="urgent"),
            ), worker_env["log"].read_text()[-3000:]
        finally:
            for worker in workers:
                kill_worker(worker)
        counters = dt.sim.counters()
        assert counters["throttled_90018"] == 0
        assert counters["forbidden"].get("143103", 0) == 0
        assert counters["ip_bans"] == 0
        assert_everyone_exactly_once(dt, notice, 6000)


def test_a_paced_send_retries_by_countdown_with_the_shipped_settings(worker_env, cast_a) -> None:
    # Two calls a second and no inline wait: nearly every grant is a wait the task cannot
    # sleep through, so it goes back to the broker with a countdown. No sweep runs: if the
    # retry failed (a setting the shipped settings lack), the batches would stay queued.
    with running_simulator(directory_size=1200) as dt:
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, 1000, languages=("en",))
        notice = make_notice(wsd, tier=Tier.TARGETED)
        env = make_env(
            worker_env,
            dt.base_url,
            extra={"DELIVERY_CALLS_PER_SECOND": "2", "DELIVERY_INLINE_WAIT_S": "0.05"},
        )
        assert env.environ()["DJANGO_SETTINGS_MODULE"] == "config.settings.local"
        app = publisher(env)
        worker = start_worker(env, name="paced", log=worker_env["log"])
        try:
            app.send_task("delivery.plan_notice", args=[notice.pk], queue="send")
            assert wait_for(lambda: finished(notice), 50), worker_env["log"].read_text()[-3000:]
        finally:
            kill_worker(worker)
        log = worker_env["log"].read_text()
        assert "Traceback" not in log, log[-3000:]
        assert_everyone_exactly_once(dt, notice, 1000)


def poll_round(app, dt, notice, advance_s: float) -> None:
    """One receipt poll of every batch still owed one, on a clock the test moves."""
    dt.sim.advance(advance_s)
    owed = Batch.objects.filter(
        dispatch__plan__notice=notice, status=BatchStatus.ACCEPTED, receipts_done=False
    )
    before = dict(owed.values_list("pk", "polls_done"))
    owed.update(next_poll_at=timezone.now())

    def polled() -> bool:
        now = dict(owed.filter(pk__in=before).values_list("pk", "polls_done"))
        return all(now.get(pk, done + 1) > done for pk, done in before.items())

    assert wait_for(
        polled, 40, sweep=lambda: app.send_task("delivery.poll_receipts", queue="receipts")
    )


def test_flow_control_drops_go_out_once_over_every_receipt_poll(worker_env, cast_a) -> None:
    # DingTalk takes 150 people a minute here and the governor lets 250 through: 100 dropped
    # (143103). Dedupe off, so a second copy would reach a phone instead of coming back 143106.
    with running_simulator(
        directory_size=400,
        time_scale=0,
        limits={"recipients_per_minute": 150, "same_content_once_per_day": False},
    ) as dt:
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, 250, languages=("en",))
        notice = make_notice(wsd, tier=Tier.TARGETED)
        env = make_env(worker_env, dt.base_url, extra={"DELIVERY_RECIPIENTS_PER_MINUTE": "100000"})
        app = publisher(env)
        worker = start_worker(env, name="drops", log=worker_env["log"])
        try:
            app.send_task("delivery.plan_notice", args=[notice.pk], queue="send")
            assert wait_for(lambda: finished(notice), 40), worker_env["log"].read_text()[-3000:]
            # DingTalk's schedule: +1, 3, 10, 30 min, +2, 6, 23 h; each poll repeats the drops.
            for advance in (60, 120, 420, 1200, 5400, 14400, 61200):
                poll_round(app, dt, notice, advance)
                assert wait_for(lambda: finished(notice), 30)
        finally:
            kill_worker(worker)
        assert dt.sim.counters()["forbidden"].get("143103", 0) == 100
        assert Batch.objects.filter(dispatch__plan__notice=notice).count() == 5
        assert not Delivery.objects.filter(
            plan__notice=notice, state=DeliveryState.FORBIDDEN
        ).exists()
        assert_everyone_exactly_once(dt, notice, 250)


def test_an_unknown_send_after_dingtalk_s_day_changed_is_held_not_resent(
    worker_env, cast_a, settings
) -> None:
    # Dedupe off: a resend of the call whose answer was lost would reach the phones again.
    with running_simulator(
        directory_size=700,
        faults={"timeout_hold_s": 11.0},
        limits={"same_content_once_per_day": False},
    ) as dt:
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, 500, languages=("en",))
        notice = make_notice(wsd, tier=Tier.TARGETED)
        # DingTalk's clock, which we control: moved forward (the simulator's and the engine's
        # view of it alike) so its midnight, Asia/Shanghai, comes LEAD_S from now.
        lead_s = 30.0
        now = timezone.now()
        midnight = (now.astimezone(uncertain.DINGTALK_DAY_ZONE) + timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        offset_s = (midnight - now).total_seconds() - lead_s
        dt.sim.clock.advance(offset_s)
        settings.DELIVERY_DINGTALK_CLOCK_OFFSET_S = offset_s
        env = make_env(
            worker_env,
            dt.base_url,
            extra={"DELIVERY_DINGTALK_CLOCK_OFFSET_S": str(offset_s)},
        )
        app = publisher(env)
        dt.sim.inject("asyncsend_v2", "timeout", times=1)
        worker = start_worker(env, name="dayturn", log=worker_env["log"])
        unknown = Batch.objects.filter(dispatch__plan__notice=notice, status=BatchStatus.UNKNOWN)
        try:
            assert wait_for(lambda: bool(app.control.ping(timeout=0.5)), 20), "worker not up"
            # The call whose answer is lost goes out 4 s before DingTalk's midnight; its
            # outcome is unknown only after midnight (the client waits longer than that).
            to_go = lead_s - 4.0 - (timezone.now() - now).total_seconds()
            assert to_go > 0, "the worker took too long to start"
            time.sleep(to_go)
            app.send_task("delivery.plan_notice", args=[notice.pk], queue="send")
            assert wait_for(unknown.exists, 40), worker_env["log"].read_text()[-3000:]
            first = unknown.get().uncertain_since
            assert first is not None
            assert uncertain.dingtalk_day(first) != uncertain.dingtalk_day(timezone.now())
            held = unknown.get()
            assert wait_for(
                lambda: finished(notice),
                40,
                sweep=lambda: app.send_task("delivery.sweep_dispatches", queue="urgent"),
            ), worker_env["log"].read_text()[-3000:]
        finally:
            kill_worker(worker)
        held.refresh_from_db()
        assert held.status == BatchStatus.HELD
        assert AuditEvent.objects.filter(action="delivery.batch_held", target_id=str(notice.pk))
        # The lost call did reach DingTalk: its people have it once, and nobody has it twice.
        assert_everyone_exactly_once(dt, notice, 500)


def test_a_governor_store_that_loses_its_state_mid_send_overshoots_no_limit(
    worker_env, cast_a
) -> None:
    # 6,000 people: more than DingTalk's 5,000 a minute. Half-way the governor's store loses
    # every key (what a Redis restart without persistence does to them): the windows come
    # back from the database before anything else is granted.
    with running_simulator(directory_size=6500, time_scale=20) as dt:
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, 6000, languages=("en",))
        notice = make_notice(wsd, tier=Tier.TARGETED)
        env = make_env(
            worker_env,
            dt.base_url,
            time_scale=20.0,
            extra={"DELIVERY_RECIPIENTS_WINDOW_S": "63"},
        )
        app = publisher(env)
        store = RedisGovernor(worker_env["governor_url"], worker_env["governor_prefix"])
        workers = [start_worker(env, name=f"lost{i}", log=worker_env["log"]) for i in range(2)]
        accepted = Batch.objects.filter(dispatch__plan__notice=notice, status=BatchStatus.ACCEPTED)
        try:
            app.send_task("delivery.plan_notice", args=[notice.pk], queue="send")
            assert wait_for(lambda: accepted.count() >= 45, 40)
            store.reset()
            assert wait_for(
                lambda: finished(notice),
                60,
                sweep=lambda: app.send_task("delivery.sweep_dispatches", queue="urgent"),
            ), worker_env["log"].read_text()[-3000:]
        finally:
            for worker in workers:
                kill_worker(worker)
        counters = dt.sim.counters()
        assert counters["throttled_90018"] == 0
        assert counters["forbidden"].get("143103", 0) == 0
        # The month's counter came back too: it counts at least every call DingTalk metered.
        metered = counters["quota"]["ding-demo-wsd"]["used"]
        assert store.monthly_used(app_key="ding-demo-wsd") >= metered
        assert_everyone_exactly_once(dt, notice, 6000)
        store.reset()


def test_an_urgent_notice_approved_mid_bulk_send_goes_first_on_workers_of_every_queue(
    worker_env, cast_a
) -> None:
    # Workers listen on every queue (no dedicated urgent worker). A bulk notice to 6,000
    # people is sending when an urgent one of the same department, to the same people, is
    # approved: it starts at once, and the bulk notice waits until it is done.
    with running_simulator(directory_size=6500, time_scale=20) as dt:
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, 6000, languages=("en",))
        bulk = make_notice(wsd, tier=Tier.TARGETED, title="Water main repair")
        urgent = make_notice(wsd, tier=Tier.TARGETED, title="Boil water before drinking")
        urgent.high_risk = True
        urgent.save(update_fields=["high_risk"])
        urgent = seal_approved(urgent)  # approved as high-risk: the send-time check agrees
        assert urgent.is_urgent
        env = make_env(
            worker_env,
            dt.base_url,
            time_scale=20.0,
            extra={"DELIVERY_RECIPIENTS_WINDOW_S": "63"},
        )
        app = publisher(env)
        workers = [start_worker(env, name=f"every{i}", log=worker_env["log"]) for i in range(2)]
        bulk_batches = Batch.objects.filter(dispatch__plan__notice=bulk)
        urgent_batches = Batch.objects.filter(dispatch__plan__notice=urgent)
        try:
            app.send_task("delivery.plan_notice", args=[bulk.pk], queue="send", priority=6)
            assert wait_for(
                lambda: bulk_batches.filter(status=BatchStatus.ACCEPTED).count() >= 10, 40
            )
            approved = timezone.now()
            app.send_task("delivery.plan_notice", args=[urgent.pk], queue="urgent", priority=0)
            assert wait_for(
                lambda: finished(urgent) and finished(bulk),
                60,
                sweep=lambda: app.send_task("delivery.sweep_dispatches", queue="urgent"),
            ), worker_env["log"].read_text()[-3000:]
        finally:
            for worker in workers:
                kill_worker(worker)
        span = urgent_batches.aggregate(first=Min("accepted_at"), last=Max("accepted_at"))
        assert (span["first"] - approved).total_seconds() <= 2.0
        assert span["last"] < bulk_batches.aggregate(last=Max("accepted_at"))["last"]
        # Bulk calls granted before the urgent notice's first may land just after it (one a
        # worker process: two workers of two); from then on the bulk notice waits for the
        # urgent one. The simulator numbers tasks in the order calls reach it, so this is
        # DingTalk's order, not when a loaded worker got round to recording its calls.
        tasks = urgent_batches.aggregate(first=Min("task_id"), last=Max("task_id"))
        overlap = bulk_batches.filter(task_id__gt=tasks["first"], task_id__lt=tasks["last"])
        assert overlap.count() <= 4, sorted(overlap.values_list("task_id", flat=True))
        counters = dt.sim.counters()
        assert counters["throttled_90018"] == 0
        assert counters["forbidden"].get("143103", 0) == 0
        for notice in (bulk, urgent):
            userids = list(
                Delivery.objects.filter(plan__notice=notice).values_list(
                    "dingtalk_user_id", flat=True
                )
            )
            assert len(userids) == 6000
        dt.sim.advance(30)
        per_person = Counter(
            len(dt.sim.inbox(u, "ding-demo-wsd"))
            for u in Delivery.objects.filter(plan__notice=bulk).values_list(
                "dingtalk_user_id", flat=True
            )
        )
        assert per_person == Counter({2: 6000}), per_person
