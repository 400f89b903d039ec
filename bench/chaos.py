"""Benchmark: the delivery engine under chaos, judged by every phone's inbox.

    .venv/bin/python bench/chaos.py [--runs 3] [--people 20000] [--scale 12]

It starts its own PostgreSQL and Redis on free ports (so it may restart them; Redis with no
persistence), migrates a scratch database, and starts Celery workers exactly as the README's
production section does (``celery -A config worker`` on every queue, the shipped settings
configured by the environment). The bench stands in for beat (a sweep every 3 s, receipt
polls driven round by round). DingTalk is the simulator, in this process: limits on, its
same-day duplicate rule OFF (a second copy reaches the phone), its clock sped up ``--scale``
times (the governor's windows with it).

Each scenario sends a notice to ``--people`` people (20,000) and then runs DingTalk's seven
receipt polls (+1, 3, 10, 30 min, +2, 6, 23 h, moved on the simulator's clock):

- baseline;
- sigkill: a worker is killed (SIGKILL) mid-send and replaced;
- redis_restart: Redis is killed mid-send and started again empty (no persistence);
- postgres_restart: PostgreSQL is restarted mid-send;
- faults: 5% of DingTalk's answers are HTTP 5xx and 1% are held past the client's timeout;
- day_change: DingTalk's day (Asia/Shanghai) changes between the +2 h and +6 h polls;
- urgent: an urgent citywide notice of the same department, to the same people, is approved
  while the bulk notice is sending, with every worker on every queue.

Per scenario: ``lost`` (people with no copy), ``duplicated`` (people with two or more copies of
one notice that DingTalk would deliver; ``resent_same_day`` counts apart the people whose
second copy is a resend of an unknown outcome on the first copy's DingTalk day: DingTalk drops
it as a duplicate, 143106, and only the simulator's dedupe being off lets it through),
``dropped_143103`` and ``throttled_90018`` (as the simulator counts them) and
``finished`` (the notice's plan done, no batch open or held). The urgent scenario adds
``urgent_first_call_s`` (approval to its first accepted call) and ``urgent_done_before_bulk``.
Each figure is the median of the runs (``finished``: every run). The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = (
    "baseline",
    "sigkill",
    "redis_restart",
    "postgres_restart",
    "faults",
    "day_change",
    "urgent",
)
APP_KEY = "ding-demo-hko"
# DingTalk's receipt schedule after a call (seconds): +1, 3, 10, 30 min, +2, 6, 23 h.
POLL_OFFSETS_S = (60, 180, 600, 1800, 7200, 21600, 82800)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_tool(name: str) -> str:
    """A PostgreSQL server binary: the newest packaged version, else the PATH's."""
    packaged = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    found = packaged[-1] if packaged else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install PostgreSQL to run this benchmark")
    return found


class Services:
    """PostgreSQL and Redis of this benchmark alone, on free ports, restartable."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bench-chaos-"))
        self.pg_port = free_port()
        self.redis_port = free_port()
        self.pg_data = self.folder / "pg"
        self.redis: subprocess.Popen[bytes] | None = None
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(self.folder, "postgres")

    def _pg(self, *args: str) -> None:
        subprocess.run([*self.as_postgres, *args], check=True, capture_output=True, timeout=120)

    def start_postgres(self) -> None:
        self._pg(pg_tool("initdb"), "-D", str(self.pg_data), "-U", "postgres", "--auth=trust")
        self.pg_ctl("start")

    def pg_ctl(self, action: str) -> None:
        options = (
            f"-p {self.pg_port} -c listen_addresses=127.0.0.1 -k {self.folder} "
            "-c fsync=off -c max_connections=200"
        )
        args = [pg_tool("pg_ctl"), "-D", str(self.pg_data), "-o", options, "-w"]
        if action != "start":
            args += ["-m", "fast"]
        self._pg(*args, "-l", str(self.folder / "pg.log"), action)

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.redis_port)) == 0:
                    return
            time.sleep(0.05)
        raise SystemExit("redis did not start")

    def kill_redis(self) -> None:
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait(10)
            self.redis = None

    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.pg_port}/chaos"

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def stop(self) -> None:
        self.kill_redis()
        with contextlib.suppress(subprocess.CalledProcessError):
            self.pg_ctl("stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def settle_db() -> None:
    """Drop this process's database connection if the server went away meanwhile."""
    from django.db import connection

    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any broken connection is closed and reopened later
        connection.close()


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - the database may be restarting: ask again
            settle_db()
        time.sleep(every)
    return False


class Beat(threading.Thread):
    """Stands in for celery beat (a sweep every few seconds: beat's 30 s on a sped-up day) and
    for the process supervisor production runs workers under (a worker that exited is started
    again, as systemd's Restart=always does: Celery exits with "Unrecoverable error" when it
    loses Redis at a bad moment)."""

    def __init__(self, app: Any, restart: Callable[[], None], every: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.app, self.every, self.stopped = app, every, threading.Event()
        self.restart = restart

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            self.restart()
            try:
                self.app.send_task("delivery.sweep_dispatches", queue="urgent", priority=6)
            except Exception:  # noqa: BLE001, S112 - the broker may be restarting
                continue


class Scenario:
    """One run of one scenario: its own simulator, department, notices and workers."""

    def __init__(self, name: str, services: Services, args: argparse.Namespace, n: int) -> None:
        self.name, self.services, self.args, self.n = name, services, args, n
        self.log = services.folder / f"{name}-{n}.log"

    def run(self) -> dict[str, Any]:
        from dingtalk.simulator.testing import running_simulator

        faults: dict[str, float] = {}
        if self.name == "faults":
            faults = {"http_5xx_rate": 0.05, "timeout_rate": 0.01, "timeout_hold_s": 11.0}
        with running_simulator(
            directory_size=self.args.people + 100,
            time_scale=self.args.scale,
            limits={"same_content_once_per_day": False},
            faults=faults,
            record_requests=False,
        ) as dt:
            self.dt = dt
            return self._run()

    def _setup(self) -> None:
        from audiences.models import Recipient, SubscriptionState
        from bench.dispatch import load_recipients
        from common.testing.cast import make_cast
        from delivery.testing import WorkerEnv, connect_department, make_notice, publisher
        from notices.models import Tier

        code = f"W{self.n}{SCENARIOS.index(self.name)}{uuid.uuid4().hex[:3]}".upper()
        cast = make_cast(code, f"Department {code}", "部門", 4000 + self.n)
        # HKO's app: the professional edition, whose month of metered calls (200,000) holds
        # every scenario's sends and polls (the governor counts them all, run after run).
        self.department = connect_department(cast.department, self.dt.app(APP_KEY))
        load_recipients(self.department.pk, "hko", self.args.people, ("en",))
        # One person who opted out: no organisation-wide call, so the citywide notice goes to
        # exactly the department's subscribers, in batches the governor can meter.
        Recipient.objects.filter(
            department=self.department, dingtalk_user_id=f"hko{self.args.people - 1:07d}"
        ).update(subscription_state=SubscriptionState.UNSUBSCRIBED)
        self.bulk = make_notice(
            self.department, tier=Tier.TARGETED, title=f"Water main repair {code}"
        )
        self.code = code
        self.urgent: Any = None  # approved mid-send (an approved notice is planned at once)
        self.env = WorkerEnv(
            database_url=self.services.database_url,
            simulator_url=self.dt.base_url,
            broker_url=self.services.broker_url,
            governor_url=self.services.broker_url,
            governor_prefix=f"chaos-{uuid.uuid4().hex[:8]}:",
            time_scale=self.args.scale,
            visibility_timeout_s=30,
            extra={"DELIVERY_RECIPIENTS_WINDOW_S": "62"},
        )
        self.app = publisher(self.env)

    def _run(self) -> dict[str, Any]:
        from delivery.testing import kill_worker, start_worker

        self._setup()
        workers = [
            start_worker(self.env, name=f"{self.name}{i}", concurrency=2, log=self.log)
            for i in range(2)
        ]
        lock = threading.Lock()

        def supervise() -> None:
            with lock:
                for i, worker in enumerate(workers):
                    if worker.poll() is not None:
                        workers[i] = start_worker(
                            self.env, name=f"{self.name}{i}r", concurrency=2, log=self.log
                        )
                        self.restarts += 1

        self.restarts = 0
        beat = Beat(self.app, supervise)
        beat.start()
        extra: dict[str, Any] = {}
        try:
            time.sleep(3)  # workers up
            approved = time.time()
            self.app.send_task("delivery.plan_notice", args=[self.bulk.pk], queue="send")
            extra = self._disturb(workers, approved)
            notices = [self.bulk] + ([self.urgent] if self.urgent is not None else [])
            done = wait_for(lambda: all(self._finished(n) for n in notices), self.args.timeout)
            if done:
                self._receipt_rounds()
                done = wait_for(lambda: all(self._finished(n) for n in notices), 60)
        finally:
            beat.stopped.set()
            beat.join(10)
            for worker in workers:
                kill_worker(worker)
            self._retire()
        result = self._judge(notices, done)
        result["worker_restarts"] = self.restarts
        result.update(extra)
        if self.name == "urgent":
            result.update(self._urgent_figures(extra.pop("urgent_approved_at", None)))
            result.pop("urgent_approved_at", None)
        return result

    def _retire(self) -> None:
        """Whatever this scenario left unsent stays unsent: its plans pause for good, so the
        next scenario's workers (on another simulator) never send it."""
        from delivery.models import DeliveryPlan

        settle_db()
        DeliveryPlan.objects.filter(department=self.department).update(
            status="paused", pause_code="bench_over", pause_reason="bench scenario over"
        )

    def _accepted(self, count: int) -> bool:
        from delivery.models import Batch, BatchStatus

        return (
            Batch.objects.filter(
                dispatch__plan__notice=self.bulk, status=BatchStatus.ACCEPTED
            ).count()
            >= count
        )

    def _disturb(self, workers: list[Any], approved: float) -> dict[str, Any]:
        """The scenario's fault, injected mid-send (after about a third of the calls)."""
        from delivery.testing import kill_worker, start_worker

        if self.name in ("baseline", "faults", "day_change"):
            return {}
        third = max(1, self.args.people // 300)
        wait_for(lambda: self._accepted(third), 120, every=0.05)
        if self.name == "sigkill":
            kill_worker(workers[0])
            workers[0] = start_worker(self.env, name="replacement", concurrency=2, log=self.log)
        elif self.name == "redis_restart":
            self.services.kill_redis()
            time.sleep(2)
            self.services.start_redis()
        elif self.name == "postgres_restart":
            self.services.pg_ctl("restart")
            settle_db()
        elif self.name == "urgent":
            from delivery.testing import make_notice
            from notices.models import Tier

            self.urgent = make_notice(
                self.department, tier=Tier.CITYWIDE, title=f"Boil water {self.code}"
            )
            at = time.time()
            self.app.send_task(
                "delivery.plan_notice", args=[self.urgent.pk], queue="urgent", priority=0
            )
            return {"urgent_approved_at": at}
        return {}

    def _finished(self, notice: Any) -> bool:
        from delivery.models import Batch, BatchStatus, DeliveryPlan, PlanStatus

        plan = DeliveryPlan.objects.filter(notice=notice).first()
        open_statuses = (
            BatchStatus.QUEUED,
            BatchStatus.CLAIMED,
            BatchStatus.UNKNOWN,
            BatchStatus.HELD,
        )
        return (
            plan is not None
            and plan.status == PlanStatus.DONE
            and not Batch.objects.filter(dispatch__plan=plan, status__in=open_statuses).exists()
        )

    def _receipt_rounds(self) -> None:
        """DingTalk's seven polls, on the simulator's clock (the day may change among them)."""
        from django.utils import timezone

        from delivery.models import Batch, BatchStatus
        from delivery.services.uncertain import DINGTALK_DAY_ZONE

        sim = self.dt.sim
        if self.name == "day_change":
            # Put DingTalk's midnight between the +2 h and +6 h polls.
            now = sim.clock.now()
            local = time.gmtime(now + 8 * 3600)
            to_midnight = 86400 - (local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec)
            sim.advance(max(0.0, to_midnight - 4 * 3600 - POLL_OFFSETS_S[3]))
        assert DINGTALK_DAY_ZONE.key == "Asia/Shanghai"  # noqa: S101 - the day the sim keeps
        previous = 0
        for offset in POLL_OFFSETS_S:
            sim.advance(offset - previous)
            previous = offset
            owed = Batch.objects.filter(
                dispatch__plan__department=self.department,
                status=BatchStatus.ACCEPTED,
                receipts_done=False,
            )
            before = dict(owed.values_list("pk", "polls_done"))
            owed.update(next_poll_at=timezone.now())
            self.app.send_task("delivery.poll_receipts", queue="receipts")

            def polled(before: dict[int, int] = before) -> bool:
                now = dict(Batch.objects.filter(pk__in=before).values_list("pk", "polls_done"))
                return all(now.get(pk, done + 1) > done for pk, done in before.items())

            tries = time.monotonic()
            while not wait_for(polled, 5) and time.monotonic() - tries < 60:
                self.app.send_task("delivery.poll_receipts", queue="receipts")

    def _judge(self, notices: list[Any], done: bool) -> dict[str, Any]:
        """Every phone's copies of each notice. A second copy that DingTalk's same-day rule
        would have dropped (a resend of an unknown outcome on the first copy's DingTalk day,
        which the simulator delivers only because its dedupe is off) is counted apart, as
        ``resent_same_day``; any other second copy is a duplicate."""
        from delivery.models import Batch, Delivery

        sim = self.dt.sim
        sim.advance(60)  # every accepted task handed out
        # People of a batch whose call had an unknown outcome and was sent again: DingTalk
        # drops every same-day copy after their first one (only the first call's task id, if
        # any, is known, so copies are told apart by day, not by task).
        uncertain: set[str] = set()
        for userids in Batch.objects.filter(
            dispatch__plan__department=self.department, after_unknown=True
        ).values_list("userids", flat=True):
            uncertain.update(str(u) for u in userids)
        lost = duplicated = resent_same_day = 0
        for notice in notices:
            userids = Delivery.objects.filter(plan__notice=notice).values_list(
                "dingtalk_user_id", flat=True
            )
            for userid in userids.iterator():
                copies = sorted(
                    (entry["received_at"], entry["task_id"])
                    for entry in sim.inbox(userid, APP_KEY)
                    if notice.title_en in json.dumps(entry["msg"], ensure_ascii=False)
                )
                lost += not copies
                if len(copies) < 2:
                    continue
                first_day = shanghai_day(copies[0][0])
                if userid in uncertain and all(
                    shanghai_day(at) == first_day for at, _task in copies[1:]
                ):
                    resent_same_day += 1
                else:
                    duplicated += 1
        counters = sim.counters()
        return {
            "lost": lost,
            "duplicated": duplicated,
            "dropped_143103": int(counters["forbidden"].get("143103", 0)),
            "throttled_90018": int(counters["throttled_90018"]),
            "finished": bool(done),
            "resent_same_day": resent_same_day,
        }

    def _urgent_figures(self, approved_at: float | None) -> dict[str, Any]:
        from django.db.models import Max, Min

        from delivery.models import Batch

        urgent = Batch.objects.filter(dispatch__plan__notice=self.urgent).aggregate(
            first=Min("accepted_at"), last=Max("accepted_at")
        )
        bulk_last = Batch.objects.filter(dispatch__plan__notice=self.bulk).aggregate(
            last=Max("accepted_at")
        )["last"]
        if approved_at is None or urgent["first"] is None or bulk_last is None:
            return {"urgent_first_call_s": None, "urgent_done_before_bulk": False}
        return {
            "urgent_first_call_s": round(urgent["first"].timestamp() - approved_at, 3),
            "urgent_done_before_bulk": urgent["last"] < bulk_last,
        }


def shanghai_day(at: float) -> tuple[int, int, int]:
    """DingTalk's calendar day (Asia/Shanghai, UTC+8) of a simulated epoch second."""
    day = time.gmtime(at + 8 * 3600)
    return day.tm_year, day.tm_mon, day.tm_mday


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        if isinstance(values[0], bool) or key == "finished":
            figures[key] = all(bool(v) for v in values)
        elif any(v is None for v in values):
            figures[key] = None
        else:
            figures[key] = statistics.median(values)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--scale", type=float, default=12.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    services = Services()
    try:
        services.start_postgres()
        services.start_redis()
        subprocess.run(
            [
                *services.as_postgres,
                pg_tool("createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(services.pg_port),
                "-U",
                "postgres",
                "chaos",
            ],
            check=True,
        )
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings.local",
                "DEBUG": "false",
                "PORTAL_DEMO_MODE": "false",
                "PORTAL_VAR_DIR": str(services.folder / "var"),
                "DATABASE_URL": services.database_url,
                "CELERY_BROKER_URL": services.broker_url,
                "DELIVERY_GOVERNOR_TIME_SCALE": str(args.scale),
            }
        )
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        per_scenario: dict[str, list[dict[str, Any]]] = {}
        for n in range(args.runs):
            for name in args.scenarios.split(","):
                started = time.monotonic()
                figures = Scenario(name, services, args, n).run()
                figures["seconds"] = round(time.monotonic() - started, 1)
                per_scenario.setdefault(name, []).append(figures)
                print(json.dumps({"run": n, "scenario": name, **figures}), flush=True)
    finally:
        from django.db import connections

        connections.close_all()
        services.stop()
    scenarios = {}
    result: dict[str, Any] = {"runs": args.runs, "people": args.people, "scale": args.scale}
    for name, runs in per_scenario.items():
        figures = median_of(runs)
        for key in ("urgent_first_call_s", "urgent_done_before_bulk"):
            if key in figures:
                result[key] = figures.pop(key)
        figures.pop("seconds", None)
        scenarios[name] = figures
    result["scenarios"] = scenarios
    print(json.dumps(result))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
