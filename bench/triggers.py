"""Benchmark: from a trigger to the approvers alerted on DingTalk.

- webhook_to_alert_s: a signed POST /api/triggers/<integration>/ (Django test client, in process)
  until the approver alert is in a supervisor's inbox in the DingTalk simulator (real HTTP on
  127.0.0.1, simulator clock at real time). Celery runs eagerly, so the alert task runs right
  after the request's transaction commits; the figure therefore covers verification, notice
  creation, submission, the alert task and the DingTalk call, but not broker queueing.
- feed_to_alert_s: a change on a local warnsum server (HTTP on 127.0.0.1) until the alert is in
  a supervisor's inbox, with the real poll task run every --interval seconds by a beat-like loop;
  each change lands at a random moment within the interval, so the figure includes waiting for
  the next poll (expected about interval / 2 on average, at most interval).
- poll_s: how long one poll that prepares a notice takes (fetch both languages + ingest).

Uses PostgreSQL when DATABASE_URL is set (scratch database bench_triggers, created and dropped),
else a temporary SQLite file. Last line printed: one JSON object (medians over the samples).

    .venv/bin/python bench/triggers.py [--interval 15] [--changes 3] [--webhooks 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = "bench_triggers"
APP_KEY = "ding-demo-wsd"


def require(condition: object, detail: object) -> None:
    if not condition:
        raise SystemExit(f"benchmark check failed: {detail}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, default=15.0, help="poll interval, seconds")
    parser.add_argument("--changes", type=int, default=3, help="feed changes to time")
    parser.add_argument("--webhooks", type=int, default=7, help="webhooks to time")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import psycopg

        base, _, _name = url.rpartition("/")
        os.environ["DATABASE_URL"] = f"{base}/{SCRATCH}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {SCRATCH}")
        try:
            result = run(args, "postgresql")
        finally:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench_triggers.sqlite3"
            result = run(args, "sqlite")
    print(json.dumps(result))


def wait_for_alert(sim: object, userid: str, before: int, timeout: float) -> float:
    """Seconds (perf_counter) when the supervisor's inbox grew past `before`."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if len(sim.sim.inbox(userid, APP_KEY)) > before:  # type: ignore[attr-defined]
            return time.perf_counter()
        time.sleep(0.005)
    from audit.models import AuditEvent

    last = (
        AuditEvent.objects.filter(action="notices.approvers_alerted").order_by("-sequence").first()
    )
    raise SystemExit(
        f"benchmark check failed: no alert for {userid} within {timeout} s "
        f"(inbox {len(sim.sim.inbox(userid, APP_KEY))}, last alert {last.data if last else None})"  # type: ignore[attr-defined]
    )


def run(args: argparse.Namespace, database: str) -> dict[str, object]:
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse
    from django.utils import timezone

    setup_test_environment()
    call_command("migrate", verbosity=0)

    from common.testing.cast import make_cast
    from delivery.testing import connect_department, make_recipients
    from dingtalk.simulator.testing import running_simulator
    from integrations.models import WarningMapping
    from integrations.services import callers, warning_mappings
    from integrations.tasks import poll_warnsum_task
    from integrations.testing import local_feed, signed_headers, warnsum_payloads
    from notices.models import Notice, Status, Tier
    from notices.templating import templates_seed
    from notices.testing import everyone_segment

    rng = random.Random(args.seed)
    out: dict[str, object] = {"database": database, "celery": "eager (alert task in process)"}
    with running_simulator(directory_size=400, time_scale=1) as sim, local_feed() as feed:
        settings.DINGTALK_BASE_URL = sim.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        settings.INTEGRATIONS_HKO_WARNSUM_URL = feed.url
        cache.clear()
        cast = make_cast("WSD", "Water Supplies Department", "水務署", 3003)
        app = next(a for a in sim.apps if a.code == "WSD")
        department = connect_department(cast.department, app)
        make_recipients(department, 200, start=100)
        templates = {t.code: t for t in templates_seed(actor=None, department=department)}
        supervisor_id = cast.supervisor.memberships.get().dingtalk_user_id

        # --- webhook ------------------------------------------------------------------------
        integration, secret = callers.integration_create(
            actor=None,
            department=department,
            name="Bench caller",
            templates=[templates["water-outage"]],
            rate_limit_per_minute=600,
        )
        everyone_segment(department, name="Everyone")
        client = Client()
        path = reverse("api:trigger", kwargs={"integration": integration.slug})
        webhook_times = []
        for n in range(args.webhooks):
            # Distinct titles: DingTalk silently drops the same content to the same person
            # twice a day, and the approver alert carries the notice's title.
            body = json.dumps(
                {
                    "template": "water-outage",
                    "segments": ["Everyone"],
                    "values": {
                        "area": f"Street {n}",
                        "area_zh": f"第{n}街",
                        "start": "23:00",
                        "end": "06:00",
                        "reason": "mains repairs",
                        "reason_zh": "水管維修",
                    },
                }
            ).encode()
            before = len(sim.sim.inbox(supervisor_id, APP_KEY))
            started = time.perf_counter()
            response = client.post(
                path,
                data=body,
                content_type="application/json",
                **signed_headers(secret, body, idempotency_key=f"bench-webhook-{n:04d}"),
            )
            require(response.status_code == 201, response.content)
            alerted = wait_for_alert(sim, supervisor_id, before, 30)
            webhook_times.append(alerted - started)
        require(Notice.objects.filter(status=Status.SUBMITTED).count() == args.webhooks, "notices")

        # --- Observatory feed ---------------------------------------------------------------
        mapped = {
            "WRAINA": "rainstorm-amber",
            "WRAINR": "rainstorm-red",
            "WRAINB": "rainstorm-black",
        }
        codes = list(mapped)
        for code, template in mapped.items():
            warning_mappings.warning_mapping_save(
                actor=None,
                mapping=WarningMapping(
                    department=department,
                    code_pattern=code,
                    template=templates[template],
                    tier=Tier.CITYWIDE,
                ),
            )
        poll_durations: list[float] = []
        stop = threading.Event()

        def beat() -> None:
            # Like celery beat: a tick every interval, the poll task run at each tick.
            tick = time.perf_counter()
            try:
                while not stop.is_set():
                    started = time.perf_counter()
                    prepared = poll_warnsum_task.apply().get()
                    if prepared:
                        poll_durations.append(time.perf_counter() - started)
                    tick += args.interval
                    stop.wait(max(0.0, tick - time.perf_counter()))
            finally:
                connections.close_all()

        poller = threading.Thread(target=beat, name="bench-beat", daemon=True)
        poller.start()
        feed_times = []
        try:
            for n in range(args.changes):
                code = codes[n % len(codes)]
                time.sleep(rng.uniform(0, args.interval))
                before = len(sim.sim.inbox(supervisor_id, APP_KEY))
                issued = timezone.now()
                feed.set(warnsum_payloads((code, "ISSUE", issued)))
                changed = feed.changed_at
                alerted = wait_for_alert(sim, supervisor_id, before, args.interval + 30)
                feed_times.append(alerted - changed)
        finally:
            stop.set()
            poller.join(timeout=args.interval + 30)
        require(len(poll_durations) == args.changes, poll_durations)

    out.update(
        webhook_to_alert_s=round(statistics.median(webhook_times), 3),
        webhook_to_alert_max_s=round(max(webhook_times), 3),
        feed_to_alert_s=round(statistics.median(feed_times), 3),
        feed_to_alert_max_s=round(max(feed_times), 3),
        poll_s=round(statistics.median(poll_durations), 3),
        poll_interval_s=args.interval,
        webhooks=args.webhooks,
        feed_changes=args.changes,
    )
    return out


if __name__ == "__main__":
    main()
