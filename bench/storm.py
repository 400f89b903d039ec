"""Benchmark: storm day. Dashboards and reports at a million people while departments send.

PostgreSQL + Redis, real Celery workers and the simulator (as bench/dispatch.py). A scratch
database (BENCH_DATABASE_NAME, default bench_storm) is created and dropped on the server of
DATABASE_URL; Redis keys use a unique prefix:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal BENCH_DATABASE_NAME=bench_storm \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/14 .venv/bin/python bench/storm.py

Phase "read" (simulator limits off, one 1,000,000-person notice A and another, B):
- viewer_slowdown: approval-to-last-call of B with --viewers threads polling B's dashboard
  JSON every 2 s, divided by the same for A sent just before without viewers. A poll is a GET
  of delivery:dashboard-json by a signed-in, TOTP-verified supervisor through Django's whole
  request handling (middleware, session, permission check, view, JSON), in this process
  without sockets;
- dashboard_alone_ms: the median of 10 such polls of A by one viewer, 2 s apart as the page
  polls (so each computes the figures: viewers share them for DELIVERY_DASHBOARD_CACHE_S),
  once the engine's own receipt sweep has written every person's state;
- dashboard_p95_ms / dashboard_served_ratio: --viewers threads polling A every 2 s for
  --viewer-seconds; a poll is served when its answer comes before the viewer's next poll;
- receipt_report_1m_s / _peak_mb: A's receipt report written as CSV by the background
  export's code (audit.reports report_build + rows_file_write), in its own process;
- audit_export_1m_s / _peak_mb: bench/audit.py's setup and export phases (1,000,000 events,
  COPY on PostgreSQL) in a second scratch database.
Phase "storm" (limits on, the simulator's clock at --scale):
- --departments departments, each with its own DingTalk app, approve a --storm-rows targeted
  notice within one second; storm_utilisation_min is the lowest app's use of its 5,000-a-minute
  budget while it had people waiting (busy_use: what it sent in every governor window but the
  last, per minute, over 5,000; the urgent notice's calls count for its department's app), beside the governor's ceiling for that figure
  (storm_utilisation_ceiling: 4,900 people a 60.5 s window = 0.972). storm_utilisation_whole is
  the whole notice's figure as bench/dispatch.py computes it (people / (5,000 a minute x
  (first-to-last call + one minute))), beside its ceiling: 20,000 people are four windows of
  5,000 but five of the governor's 4,900, so it cannot pass 0.8 whatever the engine does;
  throttled (90018) and dropped (143103-143106) as the simulator counts them;
- urgent_first_call_s: an urgent citywide notice approved in the middle of the storm,
  approval to its first accepted call.

Phase "reports" (not run by default; no simulator, no workers): the receipt report and the
audit export alone, each --report-runs times (median). The notice is seeded by SQL as the
engine leaves it after a receipt sweep (seed_sent_notice), not sent.

The last line printed is one JSON object. --phases read, storm or reports runs one phase only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _bench_module(name: str) -> Any:
    """Another bench's module by file (bench/ holds names of the apps: never on sys.path)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None  # noqa: S101
    assert spec.loader is not None  # noqa: S101
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


base = _bench_module("dispatch")  # the simulator, loading and broker helpers

SCRATCH = os.environ.get("BENCH_DATABASE_NAME", "bench_storm")
SEGMENT = "Everyone subscribed (delivery tests)"


def _sim(*, limits: bool, scale: float, size: int, extra_apps: int = 0) -> tuple[Any, str]:
    port = base.free_port()
    command = [
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
        "--extra-apps",
        str(extra_apps),
    ]
    process = subprocess.Popen(command, cwd=str(ROOT), stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    if not base.wait(lambda: _healthy(url), 30, every=0.1):
        raise SystemExit("simulator did not start")
    return process, url


def _healthy(url: str) -> bool:
    try:
        base.sim_get(url, "/_sim/health")
    except OSError:
        return False
    return True


def _sim_advance(url: str, seconds: int) -> None:
    request = urllib.request.Request(  # noqa: S310 - our loopback simulator
        url + "/_sim/clock", data=f"advance={seconds}".encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


def dashboard_client(user: Any) -> Any:
    """A signed-in, TOTP-verified client of the portal (Django's request handling in this
    process: middleware, session, permission check, the view and its JSON, without sockets)."""
    from django.test import Client

    from common.testing.cast import verified_client_for

    return verified_client_for(user, Client(HTTP_HOST="127.0.0.1"))


def dashboard_get(client: Any, notice_id: int) -> int:
    """One poll of the dashboard's JSON (delivery:dashboard-json), as its script makes it."""
    from django.urls import reverse

    response = client.get(reverse("delivery:dashboard-json", args=[notice_id]))
    if response.status_code not in (200, 404):  # 404 until the planner's first commit
        raise SystemExit(f"dashboard JSON answered {response.status_code}")
    return int(response.status_code)


class Viewers:
    """`count` threads, each polling a notice's dashboard JSON every `every` seconds as `user`."""

    def __init__(self, notice_id: int, count: int, user: Any, every: float = 2.0) -> None:
        self.notice_id, self.count, self.every, self.user = notice_id, count, every, user
        self.latencies: list[float] = []
        self.demanded = 0
        self.served = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(count)]

    def _run(self, i: int) -> None:
        from django.db import connection

        client = dashboard_client(self.user)
        time.sleep(self.every * i / self.count)  # viewers opened their pages at different times
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                dashboard_get(client, self.notice_id)
                took = time.monotonic() - started
                with self._lock:
                    self.demanded += 1
                    self.latencies.append(took)
                    self.served += int(took <= self.every)
                next_at += self.every
                # A poll that took longer than the period starts the next one late, as the
                # dashboard's script does (it schedules the next poll when one answers).
                self._stop.wait(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at, time.monotonic())
        finally:
            connection.close()

    def __enter__(self) -> Viewers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def summary(self, seconds: float) -> dict[str, float]:
        lat = sorted(self.latencies) or [0.0]
        # Demanded: every 2 s for the whole window, whether or not a late poll skipped a slot.
        wanted = max(self.demanded, int(self.count * seconds / self.every))
        return {
            "p50_ms": round(statistics.median(lat) * 1000, 1),
            "p95_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.95))] * 1000, 1),
            "served_ratio": round(self.served / wanted, 3) if wanted else 0.0,
            "polls": self.demanded,
        }


def _send_and_wait(notice: Any, app: Any, timeout: float) -> float:
    """Approve (enqueue the planner as approval does) and wait for the last accepted call."""
    from django.db.models import Max
    from django.utils import timezone

    from delivery import enqueue
    from delivery.models import Batch, BatchStatus, DeliveryPlan

    approved = timezone.now()
    enqueue.plan_notice(notice.pk, urgent=notice.is_urgent)
    batches = Batch.objects.filter(dispatch__plan__notice=notice)
    swept = [time.monotonic()]

    def done() -> bool:
        if time.monotonic() - swept[0] > 10:
            app.send_task("delivery.sweep_dispatches", queue="urgent")
            swept[0] = time.monotonic()
        plan = DeliveryPlan.objects.filter(notice=notice).first()
        return (
            plan is not None
            and plan.snapshot_done
            and not batches.exclude(status=BatchStatus.ACCEPTED).exists()
        )

    if not base.wait(done, timeout, every=0.5):
        raise SystemExit(f"notice {notice.pk} did not finish sending")
    last = batches.aggregate(last=Max("accepted_at"))["last"]
    return float((last - approved).total_seconds())


def _receipt_sweep(notice: Any, app: Any, timeout: float) -> float:
    from django.utils import timezone

    from delivery.models import Batch

    batches = Batch.objects.filter(dispatch__plan__notice=notice)
    batches.update(next_poll_at=timezone.now())
    started = time.monotonic()
    app.send_task("delivery.poll_receipts", queue="receipts")
    beat = [time.monotonic()]

    def polled() -> bool:
        if time.monotonic() - beat[0] > 2:
            app.send_task("delivery.poll_receipts", queue="receipts")
            beat[0] = time.monotonic()
        return not batches.filter(polls_done=0, receipts_done=False).exists()

    if not base.wait(polled, timeout, every=0.5):
        raise SystemExit("receipt sweep did not finish")
    return time.monotonic() - started


def _dashboard_alone_ms(notice_id: int, user: Any, reads: int = 10, every: float = 2.0) -> float:
    """The median of `reads` polls of the dashboard JSON by one viewer (after a first one), one
    every `every` seconds as the page polls: longer apart than the figures are shared
    (DELIVERY_DASHBOARD_CACHE_S), so each poll computes them."""
    client = dashboard_client(user)
    times = []
    for _ in range(reads + 1):
        started = time.perf_counter()
        dashboard_get(client, notice_id)
        times.append(time.perf_counter() - started)
        time.sleep(every)
    return round(statistics.median(times[1:]) * 1000, 2)


def busy_use(calls: list[tuple[Any, int]], *, scale: float, window_s: float) -> float:
    """An app's use of DingTalk's 5,000-a-minute budget while it had people waiting.

    `calls` are (accepted_at, people) of its accepted calls. DingTalk's time (x `scale`) from
    the first call is cut into the governor's windows (`window_s`); every window but the last
    was one in which the app still had people queued, so what it sent in them, per minute,
    against 5,000 a minute, is how much of the budget the engine used when it could have used
    all of it. The last window only holds the remainder.
    """
    if not calls:
        return 0.0
    first = min(at for at, _people in calls)
    windows: dict[int, int] = {}
    for at, people in calls:
        index = int((at - first).total_seconds() * scale // window_s)
        windows[index] = windows.get(index, 0) + people
    busy = max(windows)  # windows 0 .. busy-1: the app had a backlog through each of them
    if busy == 0:
        return 1.0  # everything went in the first window: nothing was left waiting
    sent = sum(windows.get(i, 0) for i in range(busy))
    return round(sent / (5000 * busy * window_s / 60), 3)


def busy_ceiling(limits: dict[str, Any]) -> float:
    """busy_use of a sender that fills every governor window: the governor's own ceiling
    (its people a window below DingTalk's 5,000 a minute, over a window a little longer than a
    minute)."""
    per_window = int(limits["recipients_per_minute"])
    return round(per_window / (5000 * float(limits["recipients_window_s"]) / 60), 3)


def _subprocess_phase(phase: str, **extra: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", phase]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across
    exec, so a child of the (large) bench process would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def phase_receipts(notice_id: int) -> dict[str, Any]:
    """A's receipt report as CSV through the background export's own code, to /dev/null."""
    from django.contrib.auth.models import User

    from audit.export_jobs import RowCounter, rows_file_write
    from audit.reports import REPORT_KEY, report_build

    auditor = User.objects.get(username="hko.auditor")
    started = time.perf_counter()
    report = report_build(actor=auditor, params={REPORT_KEY: "receipts", "notice": notice_id})
    if report.csv_copy is not None:  # PostgreSQL: COPY, as the background export writes it
        counts = [0]
        with open(os.devnull, "wb") as sink:
            for chunk in report.csv_copy(lambda n: counts.__setitem__(0, n)):
                sink.write(chunk)
        written = counts[0]
    else:
        rows = RowCounter(report.rows())
        written = rows_file_write(Path(os.devnull), "csv", report.headers, rows, title=report.title)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "rows": written,
        "peak_mb": peak_rss_mb(),
    }


def seed_sent_notice(department: Any, rows: int) -> int:
    """A `rows`-person closed-loop notice as the engine leaves it after sending and a receipt
    sweep, written by set-based SQL in seconds instead of a real send: recipients loaded as
    phase "read" loads them, then the plan, its dispatches (one per message language), user
    batches of 100 (all accepted) and the people, as delivery.services.outbox_pg writes them,
    with states as receipt polls write them: 45% read (a third of them confirmed), 52%
    unread (a reminder sent to half), 1% invalid, 1% failed, 1% not yet polled (queued in
    an accepted batch: accepted). The rollup triggers tally every statement; the plan's
    rollups are then checked against a recount (delivery.services.rollup_check). Returns the
    notice's id."""
    import datetime as dt

    from django.db import connection
    from django.utils import timezone

    from audiences.models import Recipient
    from delivery import planning
    from delivery.models import Batch, Delivery, DeliveryPlan, Dispatch, PlanStatus
    from delivery.services.rollup_check import plan_check
    from delivery.testing import make_notice
    from notices.models import Tier

    base.load_recipients(department.pk, "hko", rows, ("en", "zh-hant", "both"))
    notice = make_notice(department, tier=Tier.CLOSED_LOOP, title="Heavy rain: stay indoors")
    sent = timezone.now() - dt.timedelta(hours=1)
    plan = DeliveryPlan.objects.create(
        notice=notice,
        department=department,
        strategy=planning.Strategy.USER_BATCHES,
        status=PlanStatus.DONE,
        planned=rows,
        snapshot_done=True,
        approved_at=sent,
        first_accepted_at=sent,
        finished_at=sent + dt.timedelta(minutes=3),
    )
    languages = {"en": "en", "zh-hant": "zh", "both": "both"}
    dispatches = {
        preference: Dispatch.objects.create(
            plan=plan, language=language, message={}, content_hash="bench"
        ).pk
        for preference, language in languages.items()
    }
    layout = ", ".join(f"('{p}', {d})" for p, d in dispatches.items())
    people = "bench_storm_people"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE {people} AS SELECT r.id AS pk, r.dingtalk_user_id AS userid, "  # noqa: S608 - constants and ids
            "r.district_id AS district, m.dispatch_id, row_number() OVER (PARTITION BY "
            "m.dispatch_id ORDER BY r.id) - 1 AS rn FROM "
            f"{Recipient._meta.db_table} r JOIN (VALUES {layout}) AS m(language, dispatch_id) "
            "ON m.language = r.language WHERE r.department_id = %s",
            [department.pk],
        )
        # Accepted 10 per second from `sent` on, polled once; userids in rank order.
        cursor.execute(
            f"INSERT INTO {Batch._meta.db_table} (dispatch_id, seq, userids, dept_ids, to_all, "  # noqa: S608
            "size, status, urgent, attempts, claim_token, after_unknown, error_code, error, "
            "created_at, claimed_at, accepted_at, polls_done, last_polled_at, receipts_done) "
            "SELECT dispatch_id, rn / 100, jsonb_agg(userid ORDER BY rn), '[]'::jsonb, false, "
            "count(*), 'accepted', false, 1, '', false, '', '', %s, %s, "
            "%s + (min(pk) / 1000) * interval '1 second' / 10, 1, %s, false "
            f"FROM {people} GROUP BY dispatch_id, rn / 100",
            [sent, sent, sent, sent + dt.timedelta(minutes=30)],
        )
        cursor.execute(
            f"UPDATE {Dispatch._meta.db_table} d SET next_seq = n FROM (SELECT dispatch_id, "  # noqa: S608
            f"max(seq) + 1 AS n FROM {Batch._meta.db_table} GROUP BY dispatch_id) b "
            "WHERE b.dispatch_id = d.id AND d.plan_id = %s",
            [plan.pk],
        )
        # A person's fate by their rank: a deterministic spread of the states.
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} (plan_id, dispatch_id, batch_id, "  # noqa: S608
            "recipient_id, dingtalk_user_id, district_id, state, code, first_read_at, "
            "confirmed_at, reminders_sent, outreach, outreach_outcome) "
            "SELECT %s, p.dispatch_id, b.id, p.pk, p.userid, p.district, "
            "CASE WHEN f < 45 THEN 'read' WHEN f < 97 THEN 'unread' WHEN f < 98 THEN 'invalid' "
            "WHEN f < 99 THEN 'failed' ELSE 'queued' END, "
            "CASE WHEN f = 97 THEN 33012 WHEN f = 98 THEN 40000 END, "
            "CASE WHEN f < 45 THEN b.accepted_at + (p.rn %% 1800) * interval '1 second' END, "
            "CASE WHEN f < 45 AND f %% 3 = 0 THEN b.accepted_at + (p.rn %% 1800 + 60) "
            "* interval '1 second' END, "
            "CASE WHEN f >= 45 AND f < 97 AND f %% 2 = 0 THEN 1 ELSE 0 END, '', '' "
            f"FROM (SELECT *, (pk * 7919) %% 100 AS f FROM {people}) p "
            f"JOIN {Batch._meta.db_table} b ON b.dispatch_id = p.dispatch_id AND b.seq = p.rn / 100",
            [plan.pk],
        )
        cursor.execute(f"DROP TABLE {people}")
        cursor.execute(f"VACUUM ANALYZE {Delivery._meta.db_table}")
        cursor.execute(f"VACUUM ANALYZE {Batch._meta.db_table}")
    check = plan_check(plan.pk, repair=False)
    if check.drift:
        raise SystemExit(f"seeded plan's rollups drift from a recount: {check.summary}")
    return int(notice.pk)


def phase_reports(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The two reports alone: the receipt report of a seeded `--rows`-person notice and the
    audit export of --audit-events events, each --report-runs times (median, and the peak
    memory of the median run)."""
    from common.testing.cast import make_cast

    cast = make_cast("HKO", "Hong Kong Observatory", "香港天文台", 3001)
    started = time.monotonic()
    notice_id = seed_sent_notice(cast.department, args.rows)
    result["seed_s"] = round(time.monotonic() - started, 1)
    runs = [_subprocess_phase("receipts", notice=notice_id) for _ in range(args.report_runs)]
    median = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    result["receipt_report_1m_s"] = median["seconds"]
    result["receipt_report_rows"] = median["rows"]
    result["receipt_report_peak_mb"] = median["peak_mb"]
    result["receipt_report_runs_s"] = [r["seconds"] for r in runs]
    if args.audit_events:
        audit = _audit_export(args.audit_events, args.report_runs)
        result["audit_export_1m_s"] = audit["seconds"]
        result["audit_export_peak_mb"] = audit["peak_mb"]
        result["audit_export_runs_s"] = audit["runs_s"]


def _audit_export(events: int, runs: int = 1) -> dict[str, Any]:
    """bench/audit.py's setup, then its export `runs` times: the median run's figures."""
    audit_bench = _bench_module("audit")
    audit_bench.SCRATCH = f"{SCRATCH}_audit"
    url = audit_bench.create_scratch(os.environ["BENCH_SERVER_URL"])
    args = argparse.Namespace(events=events, iterations=1)
    try:
        audit_bench.run_phase(url, "setup", args)
        exports = [audit_bench.run_phase(url, "export", args) for _ in range(runs)]
    finally:
        audit_bench.drop_scratch(os.environ["BENCH_SERVER_URL"], url)
    export = sorted(exports, key=lambda e: e["export_s"])[len(exports) // 2]
    return {
        "seconds": export["export_s"],
        "peak_mb": export["export_peak_mb"],
        "runs_s": [e["export_s"] for e in exports],
    }


def phase_read(args: argparse.Namespace, broker: str, result: dict[str, Any]) -> None:
    from django.conf import settings
    from django.core.cache import cache

    from audiences.models import Segment
    from common.testing.cast import make_cast
    from delivery.models import Batch, DeliveryPlan
    from delivery.selectors import plan_figures
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

    hko_app = next(a for a in demo_apps() if a.code == "HKO")
    sim, url = _sim(limits=False, scale=1.0, size=args.rows)
    workers = []
    log = Path(tempfile.gettempdir()) / f"bench-storm-{os.getpid()}.log"
    try:
        settings.DINGTALK_BASE_URL = url
        cast = make_cast("HKO", "Hong Kong Observatory", "香港天文台", 3001)
        hko = connect_department(cast.department, hko_app)
        base.load_recipients(hko.pk, "hko", args.rows, ("en", "zh-hant", "both"))
        Segment.objects.get_or_create(department=hko, name=SEGMENT)
        env = WorkerEnv(
            database_url=os.environ["DATABASE_URL"],
            simulator_url=url,
            broker_url=broker,
            governor_prefix=settings.DELIVERY_GOVERNOR_PREFIX,
            visibility_timeout_s=3600,
            extra=base.UNLIMITED,
        )
        workers = [
            start_worker(env, name=f"storm{i}", concurrency=args.concurrency, log=log)
            for i in range(args.workers)
        ]
        app = publisher(env)
        time.sleep(4)
        cache.clear()
        a = make_notice(hko, tier=Tier.CLOSED_LOOP, title="Heavy rain: stay indoors")
        alone_s = _send_and_wait(a, app, args.timeout)
        b = make_notice(hko, tier=Tier.CLOSED_LOOP, title="Heavy rain: schools closed")
        with Viewers(b.pk, args.viewers, cast.supervisor) as during:
            watched_s = _send_and_wait(b, app, args.timeout)
        result["send_alone_s"] = round(alone_s, 2)
        result["send_watched_s"] = round(watched_s, 2)
        result["viewer_slowdown"] = round(watched_s / alone_s, 3)
        result["dashboard_during_send"] = during.summary(watched_s)
        # B's receipts wait: the sweep below is A's, the engine's own polls.
        Batch.objects.filter(dispatch__plan__notice=b).update(next_poll_at=None)
        # Half an hour of DingTalk's time: the simulated readers open their messages.
        _sim_advance(url, args.read_after_s)
        result["receipt_sweep_s"] = round(_receipt_sweep(a, app, args.timeout), 1)
        result["dashboard_alone_ms"] = _dashboard_alone_ms(a.pk, cast.supervisor)
        with Viewers(a.pk, args.viewers, cast.supervisor) as viewers:
            time.sleep(args.viewer_seconds)
        quiet = viewers.summary(args.viewer_seconds)
        result["dashboard_p95_ms"] = quiet["p95_ms"]
        result["dashboard_p50_ms"] = quiet["p50_ms"]
        result["dashboard_served_ratio"] = quiet["served_ratio"]
        figures = plan_figures(DeliveryPlan.objects.get(notice=a))
        result["a_reach_rate"] = figures["reach_rate"]
        result["a_delivery_rate"] = figures["delivery_rate"]
    finally:
        for worker in workers:
            kill_worker(worker)
        sim.terminate()
        sim.wait(10)
    receipts = _subprocess_phase("receipts", notice=a.pk)
    result["receipt_report_1m_s"] = receipts["seconds"]
    result["receipt_report_rows"] = receipts["rows"]
    result["receipt_report_peak_mb"] = receipts["peak_mb"]
    if args.audit_events:
        audit = _audit_export(args.audit_events)
        result["audit_export_1m_s"] = audit["seconds"]
        result["audit_export_peak_mb"] = audit["peak_mb"]


def phase_storm(args: argparse.Namespace, broker: str, result: dict[str, Any]) -> None:
    from django.conf import settings
    from django.core.cache import cache
    from django.db.models import Max, Min
    from django.utils import timezone

    from audiences.models import Segment
    from common.testing.cast import make_cast
    from delivery import enqueue
    from delivery.models import Batch, BatchStatus, DeliveryPlan
    from delivery.testing import (
        WorkerEnv,
        connect_department,
        kill_worker,
        make_notice,
        publisher,
        start_worker,
    )
    from dingtalk.simulator.config import extra_apps
    from notices.models import Tier

    base.drain_queues(broker)
    scale = args.scale
    apps = extra_apps(args.departments)
    sim, url = _sim(
        limits=True, scale=scale, size=args.storm_rows + 1000, extra_apps=args.departments
    )
    workers = []
    log = Path(tempfile.gettempdir()) / f"bench-storm-{os.getpid()}.log"
    try:
        settings.DINGTALK_BASE_URL = url
        prefix = f"bench-{uuid.uuid4().hex[:8]}:"
        settings.DELIVERY_GOVERNOR_PREFIX = prefix
        departments = []
        for i, app_config in enumerate(apps):
            cast = make_cast(app_config.code, app_config.name, app_config.name_tc, 3100 + i)
            department = connect_department(cast.department, app_config)
            base.load_recipients(department.pk, app_config.code.lower(), args.storm_rows, ("en",))
            Segment.objects.get_or_create(department=department, name=SEGMENT)
            departments.append(department)
        env = WorkerEnv(
            database_url=os.environ["DATABASE_URL"],
            simulator_url=url,
            broker_url=broker,
            governor_prefix=prefix,
            time_scale=scale,
            visibility_timeout_s=3600,
        )
        workers = [
            start_worker(env, name=f"stormw{i}", concurrency=args.concurrency, log=log)
            for i in range(args.workers)
        ]
        app = publisher(env)
        time.sleep(4)
        cache.clear()
        notices = [
            make_notice(d, tier=Tier.TARGETED, title=f"Flooding in district {i}")
            for i, d in enumerate(departments)
        ]
        urgent = make_notice(departments[0], tier=Tier.CITYWIDE, title="Black rainstorm")
        started = time.monotonic()
        for notice in notices:
            enqueue.plan_notice(notice.pk, urgent=notice.is_urgent)
        result["storm_approvals_s"] = round(time.monotonic() - started, 3)
        # The middle of the storm: each app needs about storm_rows / 5,000 simulated minutes.
        time.sleep(args.storm_rows / 5000 * 60 / scale / 2)
        approved = timezone.now()
        enqueue.plan_notice(urgent.pk, urgent=urgent.is_urgent)
        first = Batch.objects.filter(dispatch__plan__notice=urgent, status=BatchStatus.ACCEPTED)
        if base.wait(first.exists, 60, every=0.01):
            at = first.aggregate(first=Min("accepted_at"))["first"]
            result["urgent_first_call_s"] = round((at - approved).total_seconds(), 3)
        else:
            result["urgent_first_call_s"] = None
        batches = Batch.objects.filter(dispatch__plan__notice__in=notices)
        everything = Batch.objects.filter(dispatch__plan__notice__in=[*notices, urgent])

        swept = [time.monotonic()]

        def done() -> bool:
            if time.monotonic() - swept[0] > 10:
                app.send_task("delivery.sweep_dispatches", queue="urgent")
                swept[0] = time.monotonic()
            plans = DeliveryPlan.objects.filter(notice__in=[*notices, urgent], snapshot_done=True)
            return (
                plans.count() == len(notices) + 1
                and not everything.exclude(status=BatchStatus.ACCEPTED).exists()
            )

        if not base.wait(done, args.timeout, every=0.5):
            raise SystemExit(f"storm did not finish; worker log: {log}")
        limits = dict(settings.DELIVERY_LIMITS)
        window_s = float(limits["recipients_window_s"])
        uses, wholes = [], []
        for department, notice in zip(departments, notices, strict=True):
            # The app's budget: every accepted call of its department (the urgent notice's too,
            # for the department that sent it).
            app_calls = Batch.objects.filter(
                dispatch__plan__notice__department=department, status=BatchStatus.ACCEPTED
            )
            calls = list(app_calls.values_list("accepted_at", "size"))
            uses.append(busy_use(calls, scale=scale, window_s=window_s))
            mine = batches.filter(dispatch__plan__notice=notice, dispatch__round=0)
            span = mine.aggregate(first=Min("accepted_at"), last=Max("accepted_at"))
            sim_span_s = (span["last"] - span["first"]).total_seconds() * scale
            sent = sum(mine.values_list("size", flat=True))
            wholes.append(round(sent / (5000 * (sim_span_s + 60) / 60), 3))
        result["storm_utilisation"] = uses
        result["storm_utilisation_min"] = min(uses)
        result["storm_utilisation_ceiling"] = busy_ceiling(limits)
        result["storm_utilisation_whole"] = wholes
        result["storm_utilisation_whole_ceiling"] = base.utilisation_ceiling(
            args.storm_rows, limits
        )
        counters = base.sim_get(url, "/_sim/counters")
        forbidden: Any = counters.get("forbidden") or {}
        result["throttled"] = int(counters.get("throttled_90018", 0))
        result["dropped"] = sum(
            int(v) for k, v in forbidden.items() if k in ("143103", "143104", "143105", "143106")
        )
        result["dropped_by_code"] = {k: int(v) for k, v in forbidden.items()}
        result["urgent_strategy"] = DeliveryPlan.objects.get(notice=urgent).strategy
    finally:
        for worker in workers:
            kill_worker(worker)
        sim.terminate()
        sim.wait(10)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    broker = os.environ["CELERY_BROKER_URL"]
    base.drain_queues(broker)
    settings.DELIVERY_GOVERNOR_PREFIX = f"bench-{uuid.uuid4().hex[:8]}:"
    result: dict[str, Any] = {"recipients": args.rows, "viewers": args.viewers}
    if "read" in args.phases:
        phase_read(args, broker, result)
    if "storm" in args.phases:
        phase_storm(args, broker, result)
    if "reports" in args.phases:
        phase_reports(args, result)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--storm-rows", type=int, default=20_000)
    parser.add_argument("--departments", type=int, default=10)
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--viewer-seconds", type=float, default=30.0)
    parser.add_argument("--audit-events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--phases", default="read,storm")
    parser.add_argument("--read-after-s", type=int, default=1800)
    parser.add_argument("--report-runs", type=int, default=3)
    parser.add_argument("--phase", choices=["receipts"])
    parser.add_argument("--notice", type=int)
    args = parser.parse_args()
    os.chdir(ROOT)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("PORTAL_VAR_DIR", tempfile.mkdtemp(prefix="bench-storm-var-"))
    if args.phase == "receipts":
        import django

        django.setup()
        print(json.dumps(phase_receipts(args.notice)))
        return
    url = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("postgres") or not broker.startswith("redis://"):
        print(json.dumps({"skipped": "needs DATABASE_URL=postgres://... and a redis:// broker"}))
        return
    print(json.dumps(base.in_scratch_database(url, SCRATCH, lambda: run(args))))


if __name__ == "__main__":
    main()
