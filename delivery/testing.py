"""Test and benchmark helpers: a department wired to the simulator, recipients, approved notices.

Used by tests/delivery and bench/dispatch.py (shared helpers live in the app because the test
suite runs with --import-mode=importlib).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from celery import Celery
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from accounts.models import Department
from accounts.secrets import resolve_secret_ref
from audiences.membercount import directory_members_count
from audiences.models import District, Recipient, Segment, SubscriptionSource, SubscriptionState
from config.settings.celery import Queues
from delivery.models import Batch, BatchStatus
from delivery.services import planner, sender
from dingtalk.client import DingTalkClient
from dingtalk.simulator.config import AppConfig
from dingtalk.simulator.testing import RunningSimulator, running_simulator
from notices.models import Notice, Status, Tier
from notices.testing import seal_approved

LANGUAGE_CYCLE = ("en", "zh-hant", "both")


@contextmanager
def stopped_clock_simulator(settings: Any, **config: Any) -> Iterator[RunningSimulator]:
    """A simulator on a stopped clock, wired into ``settings`` with the database governor.

    ``settings`` is pytest-django's settings fixture (restored after the test); ``config`` goes
    to the simulator (directory_size, readers, ...).
    """
    with running_simulator(time_scale=0, **config) as sim:
        settings.DINGTALK_BASE_URL = sim.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        cache.clear()
        yield sim


def connect_demo_app(department: Department, sim: RunningSimulator, code: str) -> Department:
    """Point a department at the simulator's demo app of that code (WSD, HKO, ...)."""
    return connect_department(department, next(a for a in sim.apps if a.code == code))


def connect_department(department: Department, app: AppConfig) -> Department:
    """Point a department at one simulator app; the secret goes to a private temp file."""
    folder = Path(tempfile.mkdtemp(prefix="delivery-secret-"))
    secret = folder / "secret"
    secret.write_text(app.app_secret)
    secret.chmod(0o600)
    department.dingtalk_app_key = app.app_key
    department.dingtalk_agent_id = app.agent_id
    department.dingtalk_secret_ref = f"file:{secret}"
    department.dingtalk_edition = app.edition
    department.save()
    return department


class _SteppingClient(DingTalkClient):
    """A client that moves a stopped simulator's clock on a little before each directory call,
    so the per-second API limit lets a walk of every department through."""

    def __init__(self, sim: RunningSimulator, department: Department) -> None:
        super().__init__(
            department.dingtalk_app_key,
            resolve_secret_ref(department.dingtalk_secret_ref),
            department.dingtalk_agent_id or 0,
            base_url=sim.base_url,
        )
        self.stepped = sim

    def list_sub_department_ids(self, dept_id: int = 1) -> list[int]:
        self.stepped.sim.advance(0.06)
        return super().list_sub_department_ids(dept_id)

    def list_user_ids(self, dept_id: int) -> list[str]:
        self.stepped.sim.advance(0.06)
        return super().list_user_ids(dept_id)


def count_directory(department: Department, sim: RunningSimulator | None = None) -> int:
    """Count the department's DingTalk members from its (simulated) directory, as
    ``manage.py count_directory_members`` does: what an organisation-wide send reaches.
    With ``sim`` (a stopped-clock simulator), its clock steps on between calls."""
    if sim is None:
        return directory_members_count(department).total
    # The stepping client keeps the calls under DingTalk's rate in the simulator's time, so the
    # pacer's real-time spacing (10 calls a second) would only make the test wait.
    with (
        _SteppingClient(sim, department) as client,
        override_settings(AUDIENCES_SYNC_CALLS_PER_SECOND=1000),
    ):
        return directory_members_count(department, client=client).total


def sim_userid(department_code: str, index: int) -> str:
    return f"{department_code.lower()}{index:07d}"


def make_recipients(
    department: Department,
    count: int,
    *,
    start: int = 0,
    languages: tuple[str, ...] = LANGUAGE_CYCLE,
    userid_prefix: str | None = None,
) -> int:
    """Subscribed recipients whose ids are members of the simulator's generated directory."""
    districts: list[int | None] = list(District.objects.order_by("pk").values_list("pk", flat=True))
    districts = districts or [None]
    now = timezone.now()
    prefix = (userid_prefix or department.code).lower()
    rows = [
        Recipient(
            department=department,
            dingtalk_user_id=f"{prefix}{i:07d}",
            name=f"Person {i}",
            language=languages[i % len(languages)],
            district_id=districts[i % len(districts)],
            subscription_state=SubscriptionState.SUBSCRIBED,
            subscription_source=SubscriptionSource.IMPORT,
            subscription_changed_at=now,
        )
        for i in range(start, start + count)
    ]
    Recipient.objects.bulk_create(rows, batch_size=5000)
    return count


def make_notice(
    department: Department,
    *,
    tier: str = Tier.CITYWIDE,
    status: str = Status.APPROVED,
    title: str = "Water supply interruption",
    requires_confirmation: bool = False,
    max_reminders: int = 0,
    remind_after_minutes: int | None = None,
    remind_whom: str = "",
) -> Notice:
    """An approved notice, as notices' approval leaves it (content frozen, its real hash
    recorded, two approvals standing), so the planner's send-time check lets it go."""
    body = f"{title}: details for residents."
    digest = hashlib.sha256(f"{title}|{body}|{tier}".encode()).hexdigest()
    notice = Notice.objects.create(
        department=department,
        tier=tier,
        status=status,
        kind="markdown",
        title_en=title,
        title_zh="供水暫停",
        body_en=body,
        body_zh="住戶詳情。",
        requires_confirmation=requires_confirmation,
        max_reminders=max_reminders,
        remind_after_minutes=remind_after_minutes,
        remind_whom=remind_whom,
        version_hash=digest,
        approved_at=timezone.now(),
    )
    if tier != Tier.CITYWIDE:
        segment, _ = Segment.objects.get_or_create(
            department=department, name="Everyone subscribed (delivery tests)"
        )
        notice.segments.add(segment)
    return seal_approved(notice)


def send_notice(notice_id: int, *, attempts: int = 5) -> None:
    """Plan and send a notice through the delivery services, then send again any batch still
    queued: an eager test run cannot wait out a retry (a slow simulator on a busy machine),
    which the sweeper would re-enqueue in production."""
    planner.plan_notice(notice_id)
    for _ in range(attempts):
        queued = list(
            Batch.objects.filter(
                dispatch__plan__notice_id=notice_id, status=BatchStatus.QUEUED
            ).values_list("pk", flat=True)
        )
        if not queued:
            return
        for batch_id in queued:
            sender.batch_send(batch_id)


# --- real workers (tests of crash recovery and the benchmark) ---------------------------------


# The settings `make run` and production run workers with: a setting they lack fails the tests.
WORKER_SETTINGS = "config.settings.local"


def database_url(settings_dict: dict[str, Any]) -> str:
    """The DATABASE_URL that names the same PostgreSQL database as ``settings_dict``."""
    user = quote(str(settings_dict.get("USER") or ""), safe="")
    password = quote(str(settings_dict.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{quote(str(settings_dict['NAME']), safe='')}"


@dataclass
class WorkerEnv:
    """How a real worker subprocess reaches the test's database, broker and simulator.

    Workers run with the shipped settings (WORKER_SETTINGS) configured only through the
    environment, as a deployment configures them: DATABASE_URL, CELERY_BROKER_URL,
    DINGTALK_BASE_URL and the DELIVERY_* variables of config.settings.delivery.
    """

    database_url: str
    simulator_url: str
    broker_url: str = ""
    governor_url: str = ""
    governor_prefix: str = "portal:governor:"
    time_scale: float = 1.0
    # Short, so a killed worker's messages come back within a test's time; retries stay
    # below it (DELIVERY_MAX_COUNTDOWN_S).
    visibility_timeout_s: int = 10
    extra: dict[str, str] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": WORKER_SETTINGS,
                "DEBUG": "false",
                "PORTAL_DEMO_MODE": "false",
                "PORTAL_VAR_DIR": tempfile.mkdtemp(prefix="delivery-worker-var-"),
                "DATABASE_URL": self.database_url,
                "CELERY_BROKER_URL": self.broker_url,
                "CELERY_VISIBILITY_TIMEOUT_S": str(self.visibility_timeout_s),
                "DINGTALK_BASE_URL": self.simulator_url,
                "DELIVERY_GOVERNOR_PREFIX": self.governor_prefix,
                "DELIVERY_GOVERNOR_TIME_SCALE": str(self.time_scale),
                "DELIVERY_MAX_COUNTDOWN_S": str(max(1, min(300, self.visibility_timeout_s // 2))),
                "DELIVERY_CLAIM_STALE_S": "8",
                "DELIVERY_QUEUED_STALE_S": "3",
            }
        )
        if self.governor_url:
            env["DELIVERY_GOVERNOR_URL"] = self.governor_url
        env.update(self.extra)
        return env


def start_worker(
    env: WorkerEnv, *, name: str, concurrency: int = 2, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """A Celery worker on every queue, in its own process group (so SIGKILL takes all of it)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-Q",
        ",".join(Queues.ALL),
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "WARNING",
    ]
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
        command,
        env=env.environ(),
        cwd=str(Path(__file__).resolve().parent.parent),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_worker(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Kill the worker and its pool children at once (no shutdown handlers run on SIGKILL)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    process.wait(timeout=30)


def publisher(env: WorkerEnv) -> Celery:
    """A plain Celery client that publishes to the workers' broker (the test app runs eagerly)."""
    return Celery("delivery-test-publisher", broker=env.broker_url, set_as_current=False)
