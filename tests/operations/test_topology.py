"""The production topology on one machine, started with the systemd units' own commands.

gunicorn serving config.wsgi with the production settings (its secret key from a _FILE), two
worker "machines" (each running every worker unit under its own node names), a beat on each,
and the DingTalk simulator. One notice goes over HTTP from the officer's login (password and
TOTP) through compose and submit to two supervisors' approvals; while it is being sent the
machine sending it is killed, and the other one finishes: every phone shows it exactly once.

Needs PostgreSQL and Redis (as CI runs it); elsewhere it skips, saying why.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import requests
from celery import Celery
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.utils import timezone
from django_otp.oath import TOTP

from audiences.models import Segment
from common.testing.cast import TEST_PASSWORD, give_authenticator
from config.settings.celery import Queues
from delivery.models import Batch, BatchStatus, Delivery, DeliveryPlan, PlanStatus
from delivery.testing import connect_department, make_recipients
from dingtalk.simulator.testing import running_simulator
from notices.models import Notice, Status
from notices.testing import everyone_segment

ROOT = Path(__file__).resolve().parent.parent.parent
UNITS = ROOT / "deploy" / "systemd"
WORKER_UNITS = [f"portal-worker-{family}.service" for family in Queues.FAMILIES]
PEOPLE = 1000
APP = "ding-demo-wsd"
OPEN = (BatchStatus.QUEUED, BatchStatus.CLAIMED, BatchStatus.UNKNOWN)
METRICS_TOKEN = "topology-metrics-token-0123456789"
ALERT = "Approval needed"  # the approvers' alert (notices.alerts), not the notice

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unit_command(unit: str, machine: str) -> list[str]:
    """The unit's ExecStart as systemd would run it on `machine` (%h: its host name)."""
    text = (UNITS / unit).read_text()
    match = re.search(r"^ExecStart=(.*)$", text, re.MULTILINE)
    assert match, unit
    line = match.group(1).replace("@PORTAL_DIR@", str(ROOT)).replace("%%h", machine)
    return shlex.split(line.replace("${WORKER_CONCURRENCY}", "1"))


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (quotes removed)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    return values


class Machine:
    """The processes one machine runs, each in its own process group."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.env = env
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, unit: str) -> None:
        log = (self.logs / f"{self.name}-{unit}.log").open("ab")
        self.processes.append(
            subprocess.Popen(
                unit_command(unit, self.name),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                continue
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def tail(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.logs.glob(f"{self.name}-*.log"))
        )


class Browser:
    """HTTP as a browser behind the TLS proxy sees it: X-Forwarded-Proto, secure cookies."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    def _headers(self) -> dict[str, str]:
        return {
            "X-Forwarded-Proto": "https",
            "Origin": self.base.replace("http://", "https://"),
            "Referer": self.base.replace("http://", "https://") + "/",
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
        }

    def request(self, method: str, path: str, data: object = None) -> requests.Response:
        response = requests.request(
            method,
            self.base + path,
            data=data,
            headers=self._headers(),
            allow_redirects=False,
            timeout=30,
        )
        self.cookies.update({c.name: c.value for c in response.cookies if c.value})
        return response

    def csrf(self, path: str) -> str:
        page = self.request("GET", path)
        assert page.status_code == 200, (path, page.status_code)
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert match, path
        return match.group(1)

    def post_form(
        self, path: str, fields: dict[str, object], page: str | None = None
    ) -> requests.Response:
        """Post `fields` to `path` with the CSRF token of the page the form is on."""
        token = self.csrf(page or path)
        return self.request("POST", path, {"csrfmiddlewaretoken": token, **fields})


def totp_code(user: object, *, steps_ahead: int = 0) -> str:
    device = give_authenticator(user)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = timezone.now().timestamp() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def log_in(base: str, user: object) -> Browser:
    browser = Browser(base)
    answer = browser.post_form("/login/", {"username": user.username, "password": TEST_PASSWORD})
    assert answer.status_code == 302, answer.text[-2000:]
    assert "/login/verify/" in answer.headers["Location"]
    verified = browser.post_form("/login/verify/", {"token": totp_code(user)})
    assert verified.status_code == 302, verified.text[-2000:]
    assert "/login/" not in verified.headers["Location"]
    return browser


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def accepted(notice: Notice) -> int:
    return Batch.objects.filter(dispatch__plan__notice=notice, status=BatchStatus.ACCEPTED).count()


def finished(notice: Notice) -> bool:
    plan = DeliveryPlan.objects.filter(notice=notice).first()
    return (
        plan is not None
        and plan.status == PlanStatus.DONE
        and not Batch.objects.filter(dispatch__plan=plan, status__in=OPEN).exists()
    )


def notice_state(notice: Notice) -> str:
    notice.refresh_from_db()
    batches = Counter(
        Batch.objects.filter(dispatch__plan__notice=notice).values_list("status", flat=True)
    )
    plan = DeliveryPlan.objects.filter(notice=notice).values("status", "pause_reason").first()
    return f"notice {notice.status}, plan {plan}, batches {dict(batches)}\n"


@pytest.fixture
def services(settings, transactional_db) -> dict[str, str]:
    if connection.vendor != "postgresql":
        pytest.skip(
            "the production topology test needs PostgreSQL (DATABASE_URL), which every process "
            "shares, and Redis (CELERY_BROKER_URL): CI runs it on both"
        )
    broker = str(settings.CELERY_BROKER_URL)
    if not broker.startswith("redis://"):
        pytest.skip(
            "the production topology test needs Redis (CELERY_BROKER_URL=redis://...): the "
            "broker, the governor and beat's lock are shared there"
        )
    params = connection.settings_dict
    user = params["USER"] or "postgres"
    auth = f"{user}:{params['PASSWORD']}" if params["PASSWORD"] else user
    database = (
        f"postgres://{auth}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}/"
        f"{params['NAME']}"
    )
    # Production hashes passwords with argon2; give the cast argon2 hashes.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
    return {"database": database, "broker": broker}


def write_env_file(path: Path, services: dict[str, str], sim_url: str, port: int) -> None:
    (path.parent / "secret_key").write_text(
        "topology-" + uuid.uuid4().hex + uuid.uuid4().hex + "-Zq!9x\n"
    )
    run = uuid.uuid4().hex[:8]
    host = f"127.0.0.1:{port}"
    lines = {
        "DJANGO_SECRET_KEY_FILE": str(path.parent / "secret_key"),
        "ALLOWED_HOSTS": "127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": f"https://{host}",
        "DATABASE_URL": f'"{services["database"]}"',
        "CELERY_BROKER_URL": f'"{services["broker"]}"',
        "DELIVERY_GOVERNOR_PREFIX": f"topology-{run}:governor:",
        "REDBEAT_KEY_PREFIX": f"topology-{run}:redbeat",
        "REDBEAT_LOCK_TIMEOUT": "10",
        "DINGTALK_BASE_URL": sim_url,
        "INTEGRATIONS_HKO_WARNSUM_URL": f"{sim_url}/_sim/hko/warnsum",
        "PORTAL_VAR_DIR": str(path.parent / "var"),
        "PORTAL_STATIC_ROOT": str(path.parent / "static"),
        "AUDIT_ANCHOR_FILE": str(path.parent / "anchors.jsonl"),
        "PORTAL_BASE_URL": f"https://{host}",
        "PORTAL_BIND": host,
        "WEB_CONCURRENCY": "2",
        # A targeted notice to the test's 1,000 people needs two approvers, like a citywide one
        # (which would go out as one department-wide call: nothing to interrupt).
        "NOTICES_TWO_APPROVER_AUDIENCE": "500",
        "METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(path.parent / "metrics"),
    }
    (path.parent / "metrics").mkdir()
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))


def manage(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """deploy/manage, as the README's Production section runs it."""
    return subprocess.run(
        [str(ROOT / "deploy" / "manage"), str(env_file), *args],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@contextmanager
def topology(env_file: Path, logs: Path) -> Iterator[tuple[Machine, Machine, Machine]]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **read_env_file(env_file)}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.production"
    web = Machine("web", env, logs)
    machines = (Machine("machine-a", env, logs), Machine("machine-b", env, logs))
    try:
        web.start("portal-web.service")
        for machine in machines:
            for unit in [*WORKER_UNITS, "portal-beat.service"]:
                machine.start(unit)
        yield web, *machines
    finally:
        for machine in (*machines, web):
            machine.kill(signal.SIGTERM)


def purge_queues(broker: str) -> None:
    """Messages other tests left on this Redis database are not this deployment's work."""
    client = redis.Redis.from_url(broker)
    for queue in Queues.ALL:
        for key in client.scan_iter(match=f"{queue}*"):
            client.delete(key)


def sending_machine(broker: str) -> str | None:
    """The machine whose worker is running a send task now."""
    app = Celery("topology-inspector", broker=broker, set_as_current=False)
    active = app.control.inspect(timeout=2).active() or {}
    for node, tasks in active.items():
        if any(t.get("name") == "delivery.send_batches" for t in tasks):
            return node.split("@", 1)[1]
    return None


def compose_and_approve(base: str, cast, segment: Segment) -> Notice:
    officer = log_in(base, cast.pr_officer)
    composed = officer.post_form(
        f"/notices/new/{cast.department.code}/",
        {
            "tier": "targeted",
            "segments": [str(segment.pk)],
            "kind": "text",
            "classification": "unclassified",
            "title_en": "Fresh water cut in Sha Tin",
            "title_zh": "沙田暫停供水",
            "body_en": "Water supply will be suspended tonight from 23:00 to 06:00.",
            "body_zh": "今晚十一時至明早六時暫停供水。",
            "max_reminders": "0",
        },
    )
    assert composed.status_code == 302, composed.text[-3000:]
    notice = Notice.objects.get()
    detail = f"/notices/{notice.pk}/"
    submitted = officer.post_form(f"{detail}submit/", {}, page=detail)
    assert submitted.status_code == 302, submitted.text[-3000:]
    notice.refresh_from_db()
    assert notice.status == Status.SUBMITTED
    for supervisor in (cast.supervisor, cast.supervisor2):
        browser = log_in(base, supervisor)
        approved = browser.request(
            "POST",
            f"{detail}approve/",
            {
                "csrfmiddlewaretoken": browser.csrf(detail),
                "version_hash": notice.version_hash,
                # The login used this step's code; a code can be used once, the next step's is fresh.
                "totp_token": totp_code(supervisor, steps_ahead=1),
                "reach_acknowledged": "on",
            },
        )
        assert approved.status_code == 302, approved.text[-3000:]
    notice.refresh_from_db()
    assert notice.status not in (Status.SUBMITTED, Status.DRAFT), notice.status
    return notice


def test_production_topology_survives_a_lost_worker_machine(services, cast_a, tmp_path) -> None:
    for user in (cast_a.pr_officer, cast_a.supervisor, cast_a.supervisor2):
        user.password = make_password(TEST_PASSWORD)
        user.save(update_fields=["password"])
        give_authenticator(user)
    purge_queues(services["broker"])
    logs = tmp_path / "logs"
    logs.mkdir()
    # Each DingTalk call takes a second, so a send is still running when its machine dies.
    with running_simulator(directory_size=PEOPLE + 100, faults={"latency_s": 1.0}) as dt:
        wsd = connect_department(cast_a.department, dt.app(APP))
        make_recipients(wsd, PEOPLE, languages=("en",))
        port = free_port()
        env_file = tmp_path / "portal.env"
        write_env_file(env_file, services, dt.base_url, port)
        checked = manage(env_file, "check", "--deploy", "--fail-level", "WARNING")
        assert checked.returncode == 0, checked.stderr
        collected = manage(env_file, "collectstatic", "--noinput")
        assert collected.returncode == 0, collected.stderr
        base = f"http://127.0.0.1:{port}"
        with topology(env_file, logs) as (web, machine_a, machine_b):
            machines = {m.name: m for m in (machine_a, machine_b)}

            def ready() -> bool:
                try:
                    return requests.get(base + "/health/ready", timeout=10).status_code == 200
                except requests.RequestException:  # not listening yet, or still booting
                    return False

            assert wait_for(ready, 120), web.tail()
            health = manage(env_file, "celery_health", "--json", "--timeout", "5")
            families = json.loads(health.stdout or "{}").get("families", {})
            assert wait_for(
                lambda: all(
                    len(workers) == 2
                    for workers in json.loads(
                        manage(env_file, "celery_health", "--json").stdout or "{}"
                    )
                    .get("families", {"x": []})
                    .values()
                ),
                90,
                every=3,
            ), (families, machine_a.tail(), machine_b.tail())

            notice = compose_and_approve(base, cast_a, everyone_segment(wsd))

            # Mid-send: some calls accepted, the rest still to go; kill the sending machine.
            victim = None

            def sending() -> bool:
                nonlocal victim
                victim = sending_machine(services["broker"]) if accepted(notice) >= 1 else None
                return victim is not None

            assert wait_for(sending, 120, every=0.3), (
                notice_state(notice) + machine_a.tail() + machine_b.tail()
            )
            machines[victim].kill()
            at_kill = accepted(notice)
            total = Batch.objects.filter(dispatch__plan__notice=notice).count()
            assert at_kill < total, "the kill came after the send had finished"

            survivor = machines["machine-b" if victim == "machine-a" else "machine-a"]
            assert wait_for(lambda: finished(notice), 300, every=2), (
                notice_state(notice) + survivor.tail()
            )

            # Through the TLS proxy, as Prometheus scrapes it.
            proxied = {"X-Forwarded-Proto": "https"}
            metrics = requests.get(
                base + "/metrics",
                headers={**proxied, "Authorization": f"Bearer {METRICS_TOKEN}"},
                timeout=30,
            )
            assert metrics.status_code == 200
            assert re.search(r'portal_http_requests_total\{[^}]*view="health-ready"', metrics.text)
            assert requests.get(base + "/metrics", headers=proxied, timeout=30).status_code == 404
            assert re.search(r'portal_notices\{status="sent"\} 1\.0', metrics.text), metrics.text

        dt.sim.advance(30)
        userids = list(
            Delivery.objects.filter(plan__notice=notice).values_list("dingtalk_user_id", flat=True)
        )
        assert len(userids) == PEOPLE
        # The supervisors' DingTalk ids are among the recipients: their phones also show the
        # approval alert, which is not the notice.
        inboxes = {u: dt.sim.inbox(u, APP) for u in userids}
        alerts = [e for v in inboxes.values() for e in v if e["title"].startswith(ALERT)]
        assert alerts, "the approvers' DingTalk alert reached no phone"
        per_person = Counter(
            sum(not e["title"].startswith(ALERT) for e in entries) for entries in inboxes.values()
        )
        assert per_person == Counter({1: PEOPLE}), per_person
