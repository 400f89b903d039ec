"""Two beats on two "machines", one schedule: each periodic task is sent once per period.

Both beats run the production settings and the command the beat unit runs
(deploy/portal-beat.service). One holds celery-redbeat's lock in Redis and schedules; the other
waits. Killing the holder hands the schedule to the other within the lock's timeout, and still
nothing is sent twice in a period.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
import redis
from django.conf import settings

from config.settings.celery import PRIORITY_STEPS

ROOT = Path(__file__).resolve().parent.parent.parent
FAST, SLOW = 2.0, 3.0
LOCK_TIMEOUT = 6

pytestmark = [pytest.mark.slow]


@pytest.fixture
def broker() -> str:
    url = str(settings.CELERY_BROKER_URL)
    if not url.startswith("redis://"):
        pytest.skip(
            "the two-beats test needs Redis (CELERY_BROKER_URL=redis://...): the beats' "
            "lock and schedule live there, as in production"
        )
    return url


def beat_env(tmp_path: Path, broker: str, queue: str, prefix: str) -> dict[str, str]:
    (tmp_path / "beat_test_settings.py").write_text(
        "from config.settings.production import *\n"
        "CELERY_BEAT_SCHEDULE = {\n"
        f"  'fast': {{'task': 'delivery.sweep_dispatches', 'schedule': {FAST},"
        f" 'options': {{'queue': '{queue}'}}}},\n"
        f"  'slow': {{'task': 'integrations.purge_nonces', 'schedule': {SLOW},"
        f" 'options': {{'queue': '{queue}'}}}},\n"
        "}\n"
    )
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": f"{tmp_path}:{ROOT}",
        "DJANGO_SETTINGS_MODULE": "beat_test_settings",
        "DJANGO_SECRET_KEY": "k3Jq9-vXz!2pLr8sT0wYbN4cMe7hUa5dGf6iOj1QqRsTuVwXyZ_ab",
        "ALLOWED_HOSTS": "notices.example.gov.hk",
        "DATABASE_URL": "postgres://portal@127.0.0.1:5432/portal",
        "CELERY_BROKER_URL": broker,
        "REDBEAT_KEY_PREFIX": prefix,
        "REDBEAT_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
    }


def start_beat(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    celery = str(Path(sys.executable).parent / "celery")
    with log.open("wb") as out:
        return subprocess.Popen(
            [celery, "-A", "config", "beat", "--loglevel=INFO", "--pidfile="],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def drain(
    client: redis.Redis,
    queue: str,
    until: float,
    seen: dict[str, list[float]],
    stop_after_first: float | None = None,
) -> None:
    """Record when each message arrives, until `until` or `stop_after_first` s after the first."""
    # kombu's Redis transport keeps one list per priority step (CELERY_BROKER_TRANSPORT_OPTIONS).
    keys = [queue if step == 0 else f"{queue}\x06\x16{step}" for step in PRIORITY_STEPS]
    while time.monotonic() < until:
        raw = next((item for item in map(client.lpop, keys) if item is not None), None)
        if raw is None:
            time.sleep(0.05)
            continue
        now = time.monotonic()
        if stop_after_first is not None and not seen:
            until = min(until, now + stop_after_first)
        seen[json.loads(raw)["headers"]["task"]].append(now)


def assert_once_per_period(times: list[float], period: float) -> None:
    """One message a period: no two close together, and none missing between first and last."""
    assert len(times) >= 3, times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap > period * 0.5 for gap in gaps), f"sent twice in one period: {gaps}"
    assert all(gap < period * 1.5 for gap in gaps), f"a period was skipped: {gaps}"


def test_two_beats_send_each_periodic_task_once_per_period(tmp_path, broker) -> None:
    queue = f"beat-test-{uuid.uuid4().hex[:8]}"
    prefix = f"test-redbeat-{uuid.uuid4().hex[:8]}"
    env = beat_env(tmp_path, broker, queue, prefix)
    client = redis.Redis.from_url(broker)
    beats = [start_beat(env, tmp_path / f"beat{i}.log") for i in (1, 2)]
    seen: dict[str, list[float]] = defaultdict(list)
    try:
        drain(client, queue, time.monotonic() + 60, seen, stop_after_first=12)
        holders = [
            i for i in (1, 2) if b"Acquired lock" in (tmp_path / f"beat{i}.log").read_bytes()
        ]
        assert len(holders) == 1, holders
        assert_once_per_period(seen["delivery.sweep_dispatches"], FAST)
        assert_once_per_period(seen["integrations.purge_nonces"], SLOW)

        # The holder's machine dies: the other beat takes the lock and keeps the schedule.
        beats[holders[0] - 1].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        drain(client, queue, killed_at + LOCK_TIMEOUT + 12, seen)
        other = tmp_path / f"beat{3 - holders[0]}.log"
        assert b"Acquired lock" in other.read_bytes()
        fast = seen["delivery.sweep_dispatches"]
        after = [t for t in fast if t > killed_at + LOCK_TIMEOUT + 1]
        assert len(after) >= 4, fast
        gaps = [b - a for a, b in itertools.pairwise(fast)]
        assert all(gap > FAST * 0.5 for gap in gaps), f"sent twice in one period: {gaps}"
    finally:
        for beat in beats:
            if beat.poll() is None:
                beat.send_signal(signal.SIGTERM)
        for beat in beats:
            try:
                beat.wait(timeout=10)
            except subprocess.TimeoutExpired:
                beat.kill()
                beat.wait()
        client.delete(queue)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
