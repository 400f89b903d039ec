"""Benchmark: exporting 1,000,000 audit events to CSV, and what auditing adds to a state change.

Uses PostgreSQL when DATABASE_URL points at one (creates and drops the scratch database
bench_audit on that server), else a temporary SQLite file. Each phase runs in its own process,
so the export's peak RSS is the export's, not the million-row insert's. The last line printed
is one JSON object.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal .venv/bin/python bench/audit.py [--events 1000000]

Phases:
  setup     migrate, build the WSD cast through our services, insert the events with COPY
            (PostgreSQL) or bulk_create (SQLite), each with its precomputed hash chain link.
  export    the same streaming code the /audit/export/ view uses (export_start -> export_chunks:
            bounded count, keyset pages, the import-export resource, formula neutralising, CSV),
            consumed to /dev/null; reports wall time and the process's peak RSS.
  overhead  the notices app does not exist yet, so the representative state-change path is
            accounts.services.department_update + membership_grant + membership_revoke (three
            service transactions, three audit events per iteration). Time inside audit_record is
            measured with audit.services.audit_timing(); overhead = audit time / (path time -
            audit time), i.e. how much slower the path is with auditing than it would be without.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = "bench_audit"


def _django(database_url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    # The whole million must stream, as a CSV export below the threshold does in the view.
    os.environ["AUDIT_EXPORT_SYNC_MAX_ROWS"] = "100000000"
    import django

    django.setup()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _scratch_url(base: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{SCRATCH}", "", ""))


def _admin_connect(base: str) -> Any:
    import psycopg

    parts = urlsplit(base)
    return psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
        autocommit=True,
    )


def create_scratch(base: str) -> str:
    if not base.startswith("postgres"):
        path = Path(tempfile.mkdtemp(prefix="bench-audit-")) / "bench.sqlite3"
        return f"sqlite:///{path}"
    with _admin_connect(base) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {SCRATCH}")
    return _scratch_url(base)


def drop_scratch(base: str, url: str) -> None:
    if not base.startswith("postgres"):
        path = Path(url.removeprefix("sqlite:///"))
        for leftover in path.parent.glob("bench.sqlite3*"):
            leftover.unlink()
        path.parent.rmdir()
        return
    with _admin_connect(base) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")


# ----------------------------------------------------------------------------- phases (child processes)


def phase_setup(events: int) -> dict[str, Any]:
    import datetime as dt
    import uuid

    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from audit.actions import AuditAction
    from audit.chain import event_hash, normalise_data
    from audit.models import AuditEvent
    from audit.services import chain_head
    from common.testing.cast import make_cast

    cast = make_cast("WSD", "Water Supplies Department", "水務署", 3003)
    sequence, prev = chain_head()
    actions = [
        AuditAction.DEPARTMENT_UPDATED,
        AuditAction.ROLE_GRANTED,
        AuditAction.LOGGED_IN,
        AuditAction.OTP_VERIFIED,
    ]
    start = timezone.now() - dt.timedelta(days=300)
    step = dt.timedelta(days=299) / max(events, 1)
    columns = [
        "sequence",
        "occurred_at",
        "actor_id",
        "actor_label",
        "actor_department",
        "department_id",
        "action",
        "target_type",
        "target_id",
        "target_label",
        "data",
        "request_id",
        "ip",
        "otp_verified",
        "prev_hash",
        "hash",
    ]

    def rows() -> Any:
        nonlocal sequence, prev
        for i in range(events):
            sequence += 1
            fields = {
                "sequence": sequence,
                "occurred_at": start + step * i,
                "actor_id": cast.system_admin.pk,
                "actor_label": cast.system_admin.username,
                "actor_department": "WSD",
                "department_id": cast.department.pk,
                "action": str(actions[i % len(actions)]),
                "target_type": "accounts.Department",
                "target_id": str(cast.department.pk),
                # One in a thousand labels is hostile, so the neutraliser has work to do.
                "target_label": '=HYPERLINK("http://x")'
                if i % 1000 == 0
                else f"WSD setting change {i}",
                "data": normalise_data(
                    {"before": {"name_en": f"old {i}"}, "after": {"name_en": f"new {i}"}}
                ),
                "request_id": uuid.UUID(int=i + 1),
                "ip": "10.0.0.1",
                "otp_verified": True,
                "prev_hash": prev,
            }
            fields["hash"] = prev = event_hash(fields)
            yield fields

    started = time.perf_counter()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg 3 cursor behind Django's wrapper
            with raw.copy(f"COPY audit_auditevent ({', '.join(columns)}) FROM STDIN") as copy:
                for f in rows():
                    copy.write_row(
                        [
                            json.dumps(f[c], ensure_ascii=False) if c == "data" else f[c]
                            for c in columns
                        ]
                    )
            cursor.execute("ANALYZE audit_auditevent")
    else:
        batch: list[AuditEvent] = []
        for f in rows():
            batch.append(AuditEvent(**f))
            if len(batch) >= 5000:
                AuditEvent.objects.bulk_create(batch)
                batch = []
        AuditEvent.objects.bulk_create(batch)
    return {
        "insert_s": round(time.perf_counter() - started, 2),
        "events": AuditEvent.objects.count(),
    }


def phase_export() -> dict[str, Any]:
    from django.contrib.auth.models import User

    from audit.exports import export_start
    from audit.selectors import EventFilters

    auditor = User.objects.get(username="wsd.auditor")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    export = export_start(actor=auditor, filters=EventFilters(), fmt="csv")
    assert export.chunks is not None  # noqa: S101
    size = 0
    lines = 0
    with open(os.devnull, "wb") as sink:
        for chunk in export.chunks:
            sink.write(chunk)
            size += len(chunk)
            lines += chunk.count(b"\r\n")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        # CPU seconds of this process: wall time on a shared, busy machine includes waiting.
        "export_cpu_s": round(usage.ru_utime + usage.ru_stime - cpu_before, 2),
        "export_s": round(time.perf_counter() - started, 2),
        "export_peak_mb": round(_peak_rss_mb(), 1),
        "export_rows": lines - 1,
        "export_bytes": size,
    }


def phase_overhead(iterations: int) -> dict[str, Any]:
    from django.contrib.auth.models import User

    from accounts import services
    from accounts.models import Department, Membership, Role
    from audit.services import audit_timing

    department = Department.objects.get(code="WSD")
    admin = User.objects.get(username="wsd.sysadmin")
    officer = User.objects.get(username="wsd.officer")

    def one(i: int) -> None:
        services.department_update(
            actor=admin, department=department, changes={"name_en": f"Water Supplies {i}"}
        )
        services.membership_grant(
            actor=admin, user=officer, department=department, role=Role.SUPERVISOR
        )
        membership = Membership.objects.get(
            user=officer, department=department, role=Role.SUPERVISOR
        )
        services.membership_revoke(actor=admin, membership=membership)

    for i in range(20):  # warm caches and connections
        one(i)
    rounds = []
    for _ in range(3):
        with audit_timing() as timings:
            started = time.perf_counter()
            for i in range(iterations):
                one(i)
            total = time.perf_counter() - started
        audit = sum(timings)
        rounds.append((audit / (total - audit), total, audit, len(timings)))
    overhead, total, audit, calls = sorted(rounds)[1]
    return {
        "audit_overhead": round(overhead, 4),
        "path_ms": round(total / iterations * 1000, 3),
        "audit_ms_per_path": round(audit / iterations * 1000, 3),
        "audit_calls_per_path": calls // iterations,
    }


def run_phase(url: str, phase: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--database-url",
        url,
        "--events",
        str(args.events),
        "--iterations",
        str(args.iterations),
    ]
    result = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--phase", choices=["setup", "export", "overhead"])
    parser.add_argument("--database-url")
    args = parser.parse_args()

    if args.phase:
        _django(args.database_url)
        if args.phase == "setup":
            print(json.dumps(phase_setup(args.events)))
        elif args.phase == "export":
            print(json.dumps(phase_export()))
        else:
            print(json.dumps(phase_overhead(args.iterations)))
        return

    base = os.environ.get("DATABASE_URL", "")
    url = create_scratch(base)
    engine = "postgresql" if base.startswith("postgres") else "sqlite"
    try:
        setup = run_phase(url, "setup", args)
        print(
            f"[{engine}] inserted {setup['events']:,} events with their hash chain in {setup['insert_s']} s"
        )
        export = run_phase(url, "export", args)
        print(
            f"CSV export of {export['export_rows']:,} events ({export['export_bytes'] / 1e6:.0f} MB) through the "
            f"view's streaming path: {export['export_s']} s, peak RSS {export['export_peak_mb']} MB (goals: 60 s, 300 MB)"
        )
        overhead = run_phase(url, "overhead", args)
        print(
            "Audit overhead on the representative state-change path (department_update + membership_grant + "
            "membership_revoke; notices do not exist yet): "
            f"{overhead['path_ms']} ms per path, of which audit_record {overhead['audit_ms_per_path']} ms "
            f"in {overhead['audit_calls_per_path']} calls -> {overhead['audit_overhead']:.1%} (goal: 10%), "
            f"median of 3 rounds x {args.iterations}"
        )
    finally:
        drop_scratch(base, url)
    summary = {
        "database": engine,
        "events": setup["events"],
        "insert_s": setup["insert_s"],
        "export_1m_s": export["export_s"],
        "export_peak_mb": export["export_peak_mb"],
        "export_cpu_s": export["export_cpu_s"],
        "export_rows": export["export_rows"],
        "audit_overhead": overhead["audit_overhead"],
        "path_ms": overhead["path_ms"],
        "audit_ms_per_path": overhead["audit_ms_per_path"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
