"""Benchmark: the delivery engine against the simulator, with real Celery workers.

PostgreSQL + Redis (a scratch database bench_delivery is created and dropped; Redis keys use a
unique prefix):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/14 .venv/bin/python bench/dispatch.py

Phase 1, the simulator's limits off (the engine must not be the bottleneck):
- first_call_s / all_calls_s: approval to the first / last asyncsend_v2 accepted for a
  1,000,000-recipient closed-loop notice (10,000+ calls of <= 100 ids);
- engine_vs_raw: the engine's calls per second divided by a plain HTTP client's (threads
  calling DingTalkClient.send with 100 ids) against the same simulator;
- receipt_sweep_s: one getsendresult poll of every task and the resulting state of every
  person written (10,000+ tasks, 1,000,000 states);
- broadcast_s: approval to accepted for an organisation-wide (to_all_user) broadcast to a
  1,000,000-member organisation.
Phase 2, limits on and the simulator's clock sped up (the governor's windows with it):
- utilisation: recipients sent / (5,000 a minute x (first-to-last call + one minute)) by two
  workers; throttled (90018) and dropped (143103-143106) as the simulator counts them;
  utilisation_ceiling: the same formula for a sender that calls the instant the governor's
  margins allow (about 0.966 for 19,600 recipients), which no engine under them can pass.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = os.environ.get("BENCH_DATABASE_NAME", "bench_delivery")
UNLIMITED = {
    "DELIVERY_CALLS_PER_SECOND": "1000000",
    "DELIVERY_RECIPIENTS_PER_MINUTE": "1000000000",
    "DELIVERY_IP_CALLS_PER_WINDOW": "1000000000",
    # One call's reach is capped like the rest (the simulator's limits are off too).
    "DELIVERY_MAX_REACH_PER_CALL": "1000000000",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_simulator(
    *, limits: bool, scale: float, size: int
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dingtalk.simulator",
            "--port",
            str(port),
            "--limits",
            "on" if limits else "off",
            "--time-scale",
            str(scale),
            "--directory-size",
            str(size),
            "--no-record",
        ],
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_sim/health", timeout=1):  # noqa: S310 - our loopback simulator
                return process, url
        except OSError:
            time.sleep(0.05)
    raise SystemExit("simulator did not start")


def sim_get(url: str, path: str) -> dict[str, object]:
    with urllib.request.urlopen(url + path, timeout=10) as response:  # noqa: S310 - loopback
        data = json.loads(response.read())
    return data if isinstance(data, dict) else {}


def load_recipients(department_id: int, prefix: str, rows: int, languages: tuple[str, ...]) -> None:
    from django.db import connection
    from django.utils import timezone

    from audiences.models import Recipient

    stamp = timezone.now().isoformat()
    if connection.vendor != "postgresql":
        from accounts.models import Department
        from delivery.testing import make_recipients

        make_recipients(
            Department.objects.get(pk=department_id),
            rows,
            languages=languages,
            userid_prefix=prefix,
        )
        return
    buffer = io.StringIO()
    for i in range(rows):
        buffer.write(
            f"{department_id}\t{prefix}{i:07d}\tPerson {i}\t\t{languages[i % len(languages)]}\t"
            f"\t\tsubscribed\timport\t{stamp}\t[]\t{stamp}\t{stamp}\n"
        )
    columns = (
        "department_id, dingtalk_user_id, name, mobile, language, function_tag, risk_level, "
        "subscription_state, subscription_source, subscription_changed_at, dingtalk_dept_ids, "
        "created_at, updated_at"
    )
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {Recipient._meta.db_table} ({columns}) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        cursor.execute(f"VACUUM ANALYZE {Recipient._meta.db_table}")


def drain_queues(broker: str) -> None:
    """Forget messages a killed earlier run left in the broker (they name batches of a dropped
    database). Only the portal's queue keys are touched."""
    import redis

    from config.settings.celery import Queues

    client = redis.Redis.from_url(broker)
    for queue in Queues.ALL:
        for key in client.scan_iter(match=f"{queue}*"):
            client.delete(key)
    client.delete("unacked", "unacked_index", "unacked_mutex")


def wait(predicate: object, timeout: float, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(every)
    return bool(predicate())  # type: ignore[operator]


def raw_calls_per_s(url: str, app: object, threads: int, seconds: float) -> float:
    from dingtalk.client import DingTalkClient

    counts = [0] * threads
    stop = time.monotonic() + seconds
    msg = {"msgtype": "markdown", "markdown": {"title": "Raw", "text": "raw client baseline"}}

    def run(i: int) -> None:
        client = DingTalkClient(app.app_key, app.app_secret, app.agent_id, base_url=url)  # type: ignore[attr-defined]
        ids = [f"hko{(i * 100 + j) % 1_000_000:07d}" for j in range(100)]
        while time.monotonic() < stop:
            client.send(msg, userids=ids)
            counts[i] += 1

    started = time.monotonic()
    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def utilisation_ceiling(recipients: int, limits: dict[str, float]) -> float:
    """The utilisation of a sender that calls the instant the governor allows (the same formula).

    The governor's margins under DingTalk's limits (4,900 recipients a 60.5 s window, 18 calls a
    second) and the last window's burst, paced by the calls-per-second limit, bound what any
    sender reaches: the engine's figure is read against this, not against 1.0.
    """
    per_call = 100
    calls = math.ceil(recipients / per_call)
    per_window = int(limits["recipients_per_minute"]) // per_call
    windows = math.ceil(calls / per_window)
    last = calls - (windows - 1) * per_window
    burst_s = (last - 1) // int(limits["calls_per_second"])
    span_s = (windows - 1) * float(limits["recipients_window_s"]) + burst_s
    return round(recipients / (5000 * (span_s + 60) / 60), 3)


def run(args: argparse.Namespace) -> dict[str, object]:
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db.models import Max, Min
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from audiences.models import Segment
    from common.testing.cast import make_cast
    from delivery import enqueue
    from delivery.models import Batch, BatchStatus, Delivery, DeliveryPlan
    from delivery.testing import (
        WorkerEnv,
        connect_department,
        kill_worker,
        make_notice,
        publisher,
        start_worker,
    )
    from dingtalk.simulator.config import demo_apps
    from notices.models import Tier

    apps = {a.code: a for a in demo_apps()}
    broker = os.environ["CELERY_BROKER_URL"]
    drain_queues(broker)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    os.environ["DELIVERY_GOVERNOR_PREFIX"] = prefix
    from django.conf import settings

    settings.DELIVERY_GOVERNOR_PREFIX = prefix
    result: dict[str, object] = {"recipients": args.rows, "workers": args.workers}
    log = Path(tempfile.gettempdir()) / f"bench-dispatch-{os.getpid()}.log"

    # --- phase 1: limits off ----------------------------------------------------------------
    sim, url = start_simulator(limits=False, scale=1.0, size=args.rows)
    workers = []
    try:
        settings.DINGTALK_BASE_URL = url
        # A million-person notice takes 10,000 sends and up to 70,000 receipt polls: only the
        # professional edition's 200,000 metered calls a month hold that (the standard
        # edition's 5,000 would pause the notice, as the pre-flight warns). HKO's app is one.
        cast = make_cast("HKO", "Hong Kong Observatory", "香港天文台", 3001)
        hko = connect_department(cast.department, apps["HKO"])
        started = time.monotonic()
        load_recipients(hko.pk, "hko", args.rows, ("en", "zh-hant", "both"))
        result["load_s"] = round(time.monotonic() - started, 1)
        Segment.objects.get_or_create(department=hko, name="Everyone subscribed (delivery tests)")
        env = WorkerEnv(
            database_url=os.environ["DATABASE_URL"],
            simulator_url=url,
            broker_url=broker,
            governor_prefix=prefix,
            # The simulator's limits are off: so are the governor's, to measure the engine.
            visibility_timeout_s=3600,
            extra=UNLIMITED,
        )
        workers = [
            start_worker(env, name=f"bench{i}", concurrency=args.concurrency, log=log)
            for i in range(args.workers)
        ]
        app = publisher(env)
        time.sleep(4)  # workers up and connected
        cache.clear()

        notice = make_notice(hko, tier=Tier.CLOSED_LOOP, title="Contact tracing instruction")
        approved = timezone.now()
        enqueue.plan_notice(notice.pk, urgent=notice.is_urgent)
        batches = Batch.objects.filter(dispatch__plan__notice=notice)

        def first_accepted() -> bool:
            return batches.filter(status=BatchStatus.ACCEPTED).exists()

        if not wait(first_accepted, 30):
            raise SystemExit(f"no batch accepted; worker log: {log}")

        snapshot_seen: list[object] = []

        def all_accepted() -> bool:
            plan = DeliveryPlan.objects.filter(notice=notice).first()
            if plan is not None and plan.snapshot_done and not snapshot_seen:
                snapshot_seen.append(timezone.now())
            return (
                plan is not None
                and plan.snapshot_done
                and not batches.exclude(status=BatchStatus.ACCEPTED).exists()
            )

        swept = [time.monotonic()]

        def all_accepted_with_sweep() -> bool:
            if time.monotonic() - swept[0] > 10:
                app.send_task("delivery.sweep_dispatches", queue="urgent")
                swept[0] = time.monotonic()
            return all_accepted()

        if not wait(all_accepted_with_sweep, args.timeout, every=1.0):
            raise SystemExit(f"dispatch did not finish; worker log: {log}")
        span = batches.aggregate(first=Min("accepted_at"), last=Max("accepted_at"))
        calls = batches.count()
        result["calls"] = calls
        result["first_call_s"] = round((span["first"] - approved).total_seconds(), 3)
        result["all_calls_s"] = round((span["last"] - approved).total_seconds(), 2)
        # When the bench first saw the snapshot finished (polled each second): the calls can
        # only end after it.
        result["snapshot_seen_s"] = (
            round((snapshot_seen[0] - approved).total_seconds(), 1)  # type: ignore[operator]
            if snapshot_seen
            else None
        )
        engine_rate = calls / max((span["last"] - span["first"]).total_seconds(), 1e-3)
        result["engine_calls_per_s"] = round(engine_rate, 1)

        raw_rate = raw_calls_per_s(url, apps["HKO"], args.workers * args.concurrency, 5.0)
        result["raw_calls_per_s"] = round(raw_rate, 1)
        result["engine_vs_raw"] = round(engine_rate / raw_rate, 3)

        # Receipts: one poll of every task, every person's state written.
        batches.update(next_poll_at=timezone.now())
        sweep_started = time.monotonic()
        app.send_task("delivery.poll_receipts", queue="receipts")
        beat = [time.monotonic()]

        def polled() -> bool:
            # Stands in for beat: polls pushed back (task still in progress) come due again.
            if time.monotonic() - beat[0] > 2:
                app.send_task("delivery.poll_receipts", queue="receipts")
                beat[0] = time.monotonic()
            return not batches.filter(polls_done=0, receipts_done=False).exists()

        if not wait(polled, args.timeout, every=0.25):
            raise SystemExit(f"receipt sweep did not finish; worker log: {log}")
        result["receipt_sweep_s"] = round(time.monotonic() - sweep_started, 2)
        result["receipt_tasks"] = calls
        result["states_updated"] = (
            Delivery.objects.filter(plan__notice=notice).exclude(state="accepted").count()
        )

        # The organisation counted, as the directory sync counts it: what to_all_user reaches.
        from audiences.membercount import member_counts_store

        member_counts_store(hko, args.rows, {}, timezone.now())
        broadcast = make_notice(hko, tier=Tier.CITYWIDE, title="Black rainstorm warning")
        approved = timezone.now()
        enqueue.plan_notice(broadcast.pk, urgent=broadcast.is_urgent)
        org = Batch.objects.filter(dispatch__plan__notice=broadcast, to_all=True)
        if not wait(lambda: org.filter(status=BatchStatus.ACCEPTED).exists(), 60):
            raise SystemExit(f"broadcast not accepted; worker log: {log}")
        accepted_at = org.values_list("accepted_at", flat=True).first()
        result["broadcast_s"] = round((accepted_at - approved).total_seconds(), 3)
        result["broadcast_strategy"] = DeliveryPlan.objects.get(notice=broadcast).strategy
    finally:
        for worker in workers:
            kill_worker(worker)
        sim.terminate()
        sim.wait(10)

    # --- phase 2: limits on, sped-up clock --------------------------------------------------
    # Phase 1's leftovers (receipt polls the stand-in beat enqueued, retries) must not run on
    # phase 2's workers and take their time.
    drain_queues(broker)
    scale = args.scale
    sim, url = start_simulator(limits=True, scale=scale, size=args.util_rows + 1000)
    workers = []
    try:
        settings.DINGTALK_BASE_URL = url
        prefix2 = f"bench-{uuid.uuid4().hex[:8]}:"
        settings.DELIVERY_GOVERNOR_PREFIX = prefix2
        other = make_cast("FEHD", "Food and Environmental Hygiene Department", "食環署", 3002)
        fehd = connect_department(other.department, apps["FEHD"])
        load_recipients(fehd.pk, "fehd", args.util_rows, ("en",))
        Segment.objects.get_or_create(department=fehd, name="Everyone subscribed (delivery tests)")
        env = WorkerEnv(
            database_url=os.environ["DATABASE_URL"],
            simulator_url=url,
            broker_url=broker,
            governor_prefix=prefix2,
            time_scale=scale,
            visibility_timeout_s=3600,
        )
        workers = [
            start_worker(env, name=f"util{i}", concurrency=args.concurrency, log=log)
            for i in range(2)
        ]
        app = publisher(env)
        time.sleep(4)
        notice = make_notice(fehd, tier=Tier.TARGETED, title="Water main repair")
        enqueue.plan_notice(notice.pk, urgent=notice.is_urgent)
        batches = Batch.objects.filter(dispatch__plan__notice=notice)

        def done() -> bool:
            plan = DeliveryPlan.objects.filter(notice=notice).first()
            return (
                plan is not None
                and plan.snapshot_done
                and not batches.exclude(status=BatchStatus.ACCEPTED).exists()
            )

        if not wait(done, args.timeout, every=0.25):
            raise SystemExit(f"utilisation run did not finish; worker log: {log}")
        span = batches.aggregate(first=Min("accepted_at"), last=Max("accepted_at"))
        sim_span_s = (span["last"] - span["first"]).total_seconds() * scale
        sent = sum(batches.values_list("size", flat=True))
        result["utilisation"] = round(sent / (5000 * (sim_span_s + 60) / 60), 3)
        result["utilisation_recipients"] = sent
        result["utilisation_ceiling"] = utilisation_ceiling(sent, dict(settings.DELIVERY_LIMITS))
        result["utilisation_sim_minutes"] = round((sim_span_s + 60) / 60, 2)
        counters = sim_get(url, "/_sim/counters")
        forbidden = counters.get("forbidden") or {}
        result["throttled"] = int(counters.get("throttled_90018", 0))  # type: ignore[call-overload]
        result["dropped"] = sum(
            int(v)
            for k, v in forbidden.items()
            if k in ("143103", "143104", "143105", "143106")  # type: ignore[union-attr]
        )
    finally:
        for worker in workers:
            kill_worker(worker)
        sim.terminate()
        sim.wait(10)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--util-rows", type=int, default=19_600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--scale", type=float, default=12.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    # The bench publishes as the web app does: the shipped settings, no eager tasks.
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("PORTAL_VAR_DIR", tempfile.mkdtemp(prefix="bench-dispatch-var-"))
    url = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("postgres") or not broker.startswith("redis://"):
        print(
            json.dumps(
                {
                    "skipped": "needs DATABASE_URL=postgres://... and CELERY_BROKER_URL=redis://... "
                    "(real workers share the database and broker)"
                }
            )
        )
        return
    print(json.dumps(in_scratch_database(url, SCRATCH, lambda: run(args))))


def in_scratch_database(
    url: str, scratch: str, work: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """`work()` with DATABASE_URL pointing at a new database `scratch` on the server of `url`
    (BENCH_SERVER_URL keeps `url`), dropped afterwards whatever happens."""
    import psycopg

    server, _, _name = url.rpartition("/")
    os.environ["BENCH_SERVER_URL"] = url
    os.environ["DATABASE_URL"] = f"{server}/{scratch}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {scratch}")
    try:
        return work()
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")


if __name__ == "__main__":
    main()
