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
  overhead  a notice's submit-and-approve path: notices.services.notice_create (not measured),
            then notice_submit + notice_approve (one approver, OTP-verified session) measured,
            with the on-commit tasks published to an in-memory broker rather than run eagerly.
            Time inside audit_record is measured with audit.services.audit_timing(), both wall
            (perf_counter) and this process's CPU (process_time); overhead = audit time /
            (path time - audit time), i.e. how much slower the path is with auditing than it
            would be without. The machine is shared, so CPU time is the steadier figure; the
            database's own CPU for the audit statement is not in either (see audit/README.md).
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
    """Peak resident memory of this process. VmHWM first: Linux keeps ru_maxrss across exec,
    so a phase started by a large parent (bench/storm.py) would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
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


def _copy_fast(
    cast: Any,
    actions: list[Any],
    start: Any,
    step: Any,
    events: int,
    sequence: int,
    prev: str,
    columns: list[str],
) -> None:
    """COPY the events as preformatted text lines, each with its content hash built from a
    template of the canonical JSON (checked against audit.chain.canonical_bytes on a sample)
    and linked with audit.chain.link_hash: the same chain, several times faster to build."""
    import datetime as dt
    import hashlib
    import uuid

    from django.db import connection

    from audit.chain import link_hash

    admin_id = cast.system_admin.pk
    admin = cast.system_admin.username
    dept_id = cast.department.pk
    codes = [str(a) for a in actions]
    head = (
        '{"action":%s,"actor_department":"WSD","actor_id":%d,"actor_label":%s,'
        '"data":{"after":{"name_en":"new %d"},"before":{"name_en":"old %d"}},'
        '"department_id":%d,"ip":"10.0.0.1","occurred_at":"%s","otp_verified":true,'
        '"request_id":"%s","target_id":"%d","target_label":%s,"target_type":"accounts.Department"}'
    )
    utc_start = start.astimezone(dt.UTC).replace(tzinfo=None)
    sha = hashlib.sha256
    dumps = json.dumps
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY audit_auditevent ({', '.join(columns)}) FROM STDIN") as copy:
            lines: list[str] = []
            for i in range(events):
                sequence += 1
                when = (utc_start + step * i).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                label = '=HYPERLINK("http://x")' if i % 1000 == 0 else f"WSD setting change {i}"
                action = codes[i % len(codes)]
                request_id = str(uuid.UUID(int=i + 1))
                content = head % (
                    dumps(action),
                    admin_id,
                    dumps(admin),
                    i,
                    i,
                    dept_id,
                    when,
                    request_id,
                    dept_id,
                    dumps(label, ensure_ascii=False),
                )
                if i < 3 or i % 100_000 == 0:
                    _check_template(content, i, when, label, action, request_id, cast)
                digest = sha(content.encode()).hexdigest()
                link = link_hash(prev, sequence, digest)
                data = f'{{"after": {{"name_en": "new {i}"}}, "before": {{"name_en": "old {i}"}}}}'
                lines.append(
                    f"{sequence}\t{when}\t{admin_id}\t{admin}\tWSD\t{dept_id}\t{action}\t"
                    f"accounts.Department\t{dept_id}\t{label}\t{data}\t{request_id}\t"
                    f"10.0.0.1\tt\t{prev}\t{link}\t{digest}\n"
                )
                prev = link
                if len(lines) >= 5000:
                    copy.write("".join(lines))
                    lines = []
            if lines:
                copy.write("".join(lines))


def _check_template(
    content: str, i: int, when: str, label: str, action: str, request_id: str, cast: Any
) -> None:
    """The template must give exactly the bytes audit.chain hashes, or the chain would not verify."""
    import datetime as dt
    import uuid

    from audit.chain import canonical_bytes

    fields = {
        "occurred_at": dt.datetime.strptime(when, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC),
        "actor_id": cast.system_admin.pk,
        "actor_label": cast.system_admin.username,
        "actor_department": "WSD",
        "department_id": cast.department.pk,
        "action": action,
        "target_type": "accounts.Department",
        "target_id": str(cast.department.pk),
        "target_label": label,
        "data": {"before": {"name_en": f"old {i}"}, "after": {"name_en": f"new {i}"}},
        "request_id": uuid.UUID(request_id),
        "ip": "10.0.0.1",
        "otp_verified": True,
    }
    if canonical_bytes(fields) != content.encode():
        raise SystemExit(f"bench template drifted from audit.chain.canonical_bytes at row {i}")


def phase_setup(events: int) -> dict[str, Any]:
    import datetime as dt
    import uuid

    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from audit.actions import AuditAction
    from audit.chain import content_hash, event_hash, normalise_data
    from audit.models import AuditEvent
    from audit.services import chain_head
    from common.testing.cast import make_cast

    cast = make_cast("WSD", "Water Supplies Department", "水務署", 3003)
    sequence, prev = chain_head()
    sequence_at_start = sequence
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
        "content_hash",
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
            fields["content_hash"] = content_hash(fields)
            fields["hash"] = prev = event_hash(fields)
            yield fields

    started = time.perf_counter()
    if connection.vendor == "postgresql":
        _copy_fast(cast, actions, start, step, events, sequence, prev, columns)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE audit_auditevent")
    else:
        batch: list[AuditEvent] = []
        for f in rows():
            batch.append(AuditEvent(**f))
            if len(batch) >= 5000:
                AuditEvent.objects.bulk_create(batch)
                batch = []
        AuditEvent.objects.bulk_create(batch)
    from audit.verification import chain_verify

    # The bulk-built chain must be the real thing: verify its first few thousand links.
    prefix = chain_verify(up_to=min(events, 3000) + sequence_at_start)
    if not prefix.ok:
        raise SystemExit(f"bench chain does not verify: {prefix.message}")
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
            lines += chunk.count(b"\n")  # LF from COPY, CRLF from the Python path
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
    """A notice's submit-and-approve path, as the notices tests drive it, with audit's share."""
    from django.conf import settings
    from django.contrib.auth.models import User

    from accounts.models import Department
    from audit.context import AuditContext, audit_context
    from audit.services import audit_timing
    from config.celery import app as celery_app
    from notices import approval, services
    from notices.testing import add_recipients, everyone_segment, targeted_fields

    # Side effects on commit (approver alert, delivery planning) are Celery tasks in
    # production: publish them to an in-memory broker, as a worker would receive them, instead
    # of running them eagerly inside the measured path.
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = "memory://"
    celery_app.conf.broker_connection_retry_on_startup = False
    settings.CELERY_TASK_ALWAYS_EAGER = False

    department = Department.objects.get(code="WSD")
    officer = User.objects.get(username="wsd.officer")
    supervisor = User.objects.get(username="wsd.supervisor")
    add_recipients(department, 200)
    segment = everyone_segment(department)
    fields = targeted_fields(segment)
    verified = AuditContext(otp_verified=True)

    def one() -> tuple[float, float, float, float, int]:
        """Create a draft (not measured), then submit and approve it (measured)."""
        notice = services.notice_create(actor=officer, department=department, **fields)
        with audit_timing() as timings:
            wall, cpu = time.perf_counter(), time.process_time()
            notice = services.notice_submit(actor=officer, notice=notice)
            with audit_context(verified):
                approval.notice_approve(
                    actor=supervisor, notice=notice, version_hash=notice.version_hash
                )
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return wall, cpu, sum(timings.wall), sum(timings.cpu), len(timings)

    for _ in range(20):  # warm caches and connections
        one()
    rounds = []
    for _ in range(3):
        totals = [0.0, 0.0, 0.0, 0.0, 0.0]
        for _ in range(iterations):
            for i, value in enumerate(one()):
                totals[i] += value
        path_wall, path_cpu, audit_wall, audit_cpu, calls = totals
        rounds.append(
            {
                "overhead": audit_wall / (path_wall - audit_wall),
                "overhead_cpu": audit_cpu / (path_cpu - audit_cpu),
                "path_ms": path_wall / iterations * 1000,
                "path_cpu_ms": path_cpu / iterations * 1000,
                "audit_ms": audit_wall / iterations * 1000,
                "audit_cpu_ms": audit_cpu / iterations * 1000,
                "calls": calls / iterations,
            }
        )
    median = sorted(rounds, key=lambda r: r["overhead"])[1]
    median_cpu = sorted(rounds, key=lambda r: r["overhead_cpu"])[1]
    return {
        "audit_overhead": round(median["overhead"], 4),
        "audit_overhead_cpu": round(median_cpu["overhead_cpu"], 4),
        "path_ms": round(median["path_ms"], 3),
        "path_cpu_ms": round(median_cpu["path_cpu_ms"], 3),
        "audit_ms_per_path": round(median["audit_ms"], 3),
        "audit_cpu_ms_per_path": round(median_cpu["audit_cpu_ms"], 3),
        "audit_calls_per_path": median["calls"],
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
            "Audit overhead on a notice's submit-and-approve path (notices.services.notice_submit + "
            f"notice_approve): {overhead['path_ms']} ms wall / {overhead['path_cpu_ms']} ms CPU per "
            f"path, of which audit_record {overhead['audit_ms_per_path']} ms wall / "
            f"{overhead['audit_cpu_ms_per_path']} ms CPU in {overhead['audit_calls_per_path']} calls "
            f"-> {overhead['audit_overhead']:.1%} wall, {overhead['audit_overhead_cpu']:.1%} CPU "
            f"(goal: 10%), median of 3 rounds x {args.iterations}"
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
        "audit_overhead_cpu": overhead["audit_overhead_cpu"],
        "path_ms": overhead["path_ms"],
        "path_cpu_ms": overhead["path_cpu_ms"],
        "audit_ms_per_path": overhead["audit_ms_per_path"],
        "audit_cpu_ms_per_path": overhead["audit_cpu_ms_per_path"],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
