"""Benchmark: the compose page's live preview for a 1,000,000-recipient audience.

The preview endpoint renders both languages' DingTalk messages with their counters and the
pre-flight figures (recipients, calls, quota, finish time, SMS saving). The audience count comes
from a five-minute cache after the first request, and the page says so ("counted N s ago
(cached)"); the uncached figure is reported too.

PostgreSQL (recipients loaded with COPY into a scratch database bench_notices, dropped after):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal .venv/bin/python bench/notices.py
Without DATABASE_URL it runs on a temporary SQLite file. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = "bench_notices"


def require(condition: object, detail: object) -> None:
    if not condition:
        raise SystemExit(f"benchmark check failed: {detail}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
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
            result = run(args.rows, args.repeat)
        finally:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench_notices.sqlite3"
            result = run(args.rows, args.repeat)
    print(json.dumps(result))


def load_recipients(department_id: int, rows: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from audiences.models import Recipient

    now = timezone.now()
    if connection.vendor == "postgresql":
        buffer = io.StringIO()
        stamp = now.isoformat()
        risks = ("high", "medium", "low")
        for i in range(rows):
            buffer.write(
                f"{department_id}\tu{i:07d}\tPerson {i}\t\tboth\tfrontline\t{risks[i % 3]}\t"
                f"subscribed\timport\t{stamp}\t[]\t{stamp}\t{stamp}\n"
            )
        columns = (
            "department_id, dingtalk_user_id, name, mobile, language, function_tag, risk_level, "
            "subscription_state, subscription_source, subscription_changed_at, dingtalk_dept_ids, "
            "created_at, updated_at"
        )
        with connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(f"COPY {Recipient._meta.db_table} ({columns}) FROM STDIN") as copy:
                copy.write(buffer.getvalue())
            cursor.execute(f"VACUUM ANALYZE {Recipient._meta.db_table}")
        return
    from accounts.models import Department
    from notices.testing import add_recipients

    add_recipients(Department.objects.get(pk=department_id), rows)


def run(rows: int, repeat: int) -> dict[str, object]:
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    setup_test_environment()
    call_command("migrate", verbosity=0)

    from audiences.models import Segment
    from common.testing.cast import make_cast, verified_client_for

    cast = make_cast("WSD", "Water Supplies Department", "水務署", 3003)
    department = cast.department
    started = time.monotonic()
    load_recipients(department.pk, rows)
    load_s = round(time.monotonic() - started, 1)
    everyone = Segment.objects.create(department=department, name="Everyone")
    client = verified_client_for(cast.pr_officer)
    url = reverse("notices:preview", args=[department.code])

    def form(tier: str, i: int) -> dict[str, object]:
        data: dict[str, object] = {
            "tier": tier,
            "kind": "action_card",
            "classification": "unclassified",
            "title_en": "Red Rainstorm Warning Signal",
            "title_zh": "紅色暴雨警告信號",
            "body_en": f"Heavy rain. Stay indoors. Update {i}.",
            "body_zh": f"大雨。請留在室內。更新 {i}。",
            "button_1_title_en": "Safety advice",
            "button_1_title_zh": "安全提示",
            "button_1_url": "https://www.hko.gov.hk/",
        }
        if tier != "citywide":
            data["segments"] = [str(everyone.pk)]
        return data

    def timed(tier: str, i: int, *, clear: bool = False) -> tuple[float, dict[str, object]]:
        if clear:
            cache.clear()
        t0 = time.perf_counter()
        response = client.post(url, form(tier, i))
        elapsed = (time.perf_counter() - t0) * 1000
        require(response.status_code == 200, response.status_code)
        return elapsed, response.json()

    cold, first = timed("citywide", 0, clear=True)
    figures = first["preflight"]
    require(figures["recipients"] == rows, figures)  # type: ignore[index]
    require(not first["errors"], first["errors"])
    warm = []
    for i in range(1, repeat + 1):
        elapsed, data = timed("citywide", i)
        require(data["preflight"]["recipients_cached"] is True, "count should be cached")  # type: ignore[index]
        warm.append(elapsed)
    targeted = [timed("targeted", i)[0] for i in range(1, repeat + 1)]
    uncached = [timed("citywide", i, clear=True)[0] for i in range(3)]
    return {
        "preview_ms": round(statistics.median(warm), 1),
        "preview_p95_ms": round(sorted(warm)[int(len(warm) * 0.95) - 1], 1),
        "preview_targeted_ms": round(statistics.median(targeted), 1),
        "preview_cold_ms": round(cold, 1),
        "preview_uncached_ms": round(statistics.median(uncached), 1),
        "recipients": rows,
        "count_source": "cached up to 300 s, labelled on the page",
        "calls": figures["calls"],  # type: ignore[index]
        "eta_minutes": figures["eta_minutes"],  # type: ignore[index]
        "sms_saving_hkd": figures["sms_saving_hkd"],  # type: ignore[index]
        "load_s": load_s,
        "database": connection.vendor,
    }


if __name__ == "__main__":
    main()
