"""/metrics: token or network only; request metrics add up across processes; engine figures."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from django.core.cache import cache
from django.test import Client

from config.celery import app
from delivery.testing import make_notice
from notices.models import Status
from operations.engine_metrics import CACHE_KEY

ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def scraper(settings) -> Client:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_NETWORKS = []
    cache.delete(CACHE_KEY)
    return Client(headers={"Authorization": f"Bearer {TOKEN}"})


def sample(text: str, name: str, **labels: str) -> float:
    wanted = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    )
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{wanted} not in the scrape")


@pytest.mark.django_db
def test_metrics_answer_404_without_the_token_and_with_a_wrong_one(settings) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_NETWORKS = []
    assert Client().get("/metrics").status_code == 404
    wrong = Client(headers={"Authorization": "Bearer nope"})
    assert wrong.get("/metrics").status_code == 404


@pytest.mark.django_db
def test_with_nothing_configured_nobody_may_scrape(settings) -> None:
    settings.METRICS_TOKEN = ""
    settings.METRICS_NETWORKS = []
    assert Client().get("/metrics").status_code == 404


@pytest.mark.django_db
def test_a_configured_network_may_scrape_without_the_token(settings) -> None:
    settings.METRICS_TOKEN = ""
    settings.METRICS_NETWORKS = ["10.0.0.0/8"]
    assert Client(REMOTE_ADDR="10.4.5.6").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.168.1.2").get("/metrics").status_code == 404


@pytest.mark.django_db
def test_engine_figures_and_request_metrics_are_scraped(scraper, cast_a, settings) -> None:
    # A governor store of this test's own (on Redis, other tests' calls are counted there too).
    settings.DELIVERY_GOVERNOR_PREFIX = f"test-metrics-{uuid.uuid4().hex[:8]}:"
    make_notice(cast_a.department, status=Status.SENDING)
    make_notice(cast_a.department, status=Status.SENDING, title="Second")
    Client().get("/health/live")
    response = scraper.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert sample(text, "portal_notices", status="sending") == 2
    assert sample(text, "portal_notices", status="draft") == 0
    assert (
        sample(text, "portal_http_requests_total", method="GET", status="200", view="health-live")
        >= 1
    )
    department = cast_a.department.code
    assert sample(text, "portal_metered_calls_quota", department=department) > 0
    assert sample(text, "portal_metered_calls_month", department=department) == 0
    assert sample(text, "portal_dingtalk_errcode_last_day", errcode="143105") == 0
    assert sample(text, "portal_receipt_poll_lag_seconds") == 0


@pytest.mark.django_db
def test_queue_depth_and_oldest_message_on_redis(scraper, settings) -> None:
    if not str(settings.CELERY_BROKER_URL).startswith("redis://"):
        pytest.skip("queue depth is read from the Redis broker (CELERY_BROKER_URL=redis://...)")
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("bulk")
    with app.connection_for_write() as conn:
        app.send_task("integrations.purge_nonces", queue="bulk", connection=conn)
        app.send_task("integrations.purge_nonces", queue="bulk", connection=conn)
    try:
        text = scraper.get("/metrics").content.decode()
        assert sample(text, "portal_queue_depth", queue="bulk") == 2
        assert 0 <= sample(text, "portal_queue_oldest_seconds", queue="bulk") < 60
    finally:
        client.delete("bulk")


def test_request_counts_add_up_across_processes(tmp_path) -> None:
    """Two processes count requests into one directory; a third scrapes their sum."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    count = (
        "import django;django.setup();from operations.metrics import REQUESTS;"
        "[REQUESTS.labels('GET','health-live','200').inc() for _ in range({n})]"
    )
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", count.format(n=n)], cwd=ROOT, env=env, check=True)
    scrape = (
        "import django;django.setup();from prometheus_client import generate_latest;"
        "from prometheus_client import CollectorRegistry, multiprocess;"
        "r=CollectorRegistry();multiprocess.MultiProcessCollector(r);"
        "print(generate_latest(r).decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", scrape],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert (
        sample(out, "portal_http_requests_total", method="GET", status="200", view="health-live")
        == 7
    )


@pytest.mark.django_db
def test_governor_waits_are_counted_per_reason(scraper) -> None:
    from delivery.governor import get_governor

    def waits(text: str) -> tuple[float, float]:
        try:
            return (
                sample(text, "portal_governor_waits_total", reason="paused"),
                sample(text, "portal_governor_wait_seconds_total", reason="paused"),
            )
        except AssertionError:
            return 0.0, 0.0

    before = waits(scraper.get("/metrics").content.decode())
    governor = get_governor()
    app_key = f"metrics-{uuid.uuid4().hex[:8]}"
    governor.pause(app_key=app_key, seconds=30)
    refused = governor.acquire_many(app_key=app_key, api="asyncsend_v2", recipients=[10])
    assert (refused.granted, refused.reason) == (0, "paused")
    cache.delete(CACHE_KEY)
    count, seconds = waits(scraper.get("/metrics").content.decode())
    assert count == before[0] + 1
    assert seconds - before[1] == pytest.approx(refused.wait_s, abs=0.5)
