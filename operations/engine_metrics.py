"""The delivery engine's metrics, read from the shared stores at scrape time.

Every figure comes from PostgreSQL or Redis, which all web and worker machines share, so one
scrape of any web process sees the whole deployment. The figures are computed at most once per
ENGINE_METRICS_TTL_S across all processes (kept in the cache), so frequent scrapes cost nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Min, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from accounts.models import Department
from audit.models import AuditEvent
from config.settings.celery import PRIORITY_STEPS, Queues
from delivery.governor import department_app_key, edition_quota, get_governor
from delivery.models import Batch, BatchStatus, Delivery
from integrations.models import Trigger
from notices.audit_actions import NoticeAuditAction
from notices.models import Notice, Status

ENGINE_METRICS_TTL_S = 15
CACHE_KEY = "operations:engine-metrics"
# DingTalk's codes a person can meet: 90018 (rate limited, on a call) and 143103-143106
# (flow control and duplicates, in a person's receipt; dingtalk-api.md).
CALL_ERRCODES = ("90018",)
PERSON_ERRCODES = (143103, 143104, 143105, 143106)
# kombu's Redis transport keeps one list per queue and priority step (CELERY_BROKER_TRANSPORT_OPTIONS).
PRIORITY_SEPARATOR = "\x06\x16"
RECENT = dt.timedelta(hours=24)

Sample = tuple[dict[str, str], float]


def notices_by_status() -> list[Sample]:
    counts = dict(Notice.objects.values_list("status").annotate(n=Count("id")).order_by())
    return [({"status": str(status)}, float(counts.get(status, 0))) for status in Status.values]


def sent_last_minute() -> tuple[list[Sample], list[Sample]]:
    """DingTalk calls accepted and people in them in the last minute, per department's app."""
    since = timezone.now() - dt.timedelta(minutes=1)
    rows = (
        Batch.objects.filter(accepted_at__gte=since)
        .values("dispatch__plan__department__code")
        .annotate(calls=Count("id"), people=Sum("size"))
        .order_by()
    )
    calls, people = [], []
    for row in rows:
        labels = {"department": str(row["dispatch__plan__department__code"])}
        calls.append((labels, float(row["calls"])))
        people.append((labels, float(row["people"] or 0)))
    return calls, people


def errcode_counts() -> list[Sample]:
    """Batches last refused with 90018 and people whose receipt carries 143103-143106 (24 h)."""
    since = timezone.now() - RECENT
    samples: list[Sample] = []
    for code in CALL_ERRCODES:
        n = Batch.objects.filter(created_at__gte=since, error_code=code).count()
        samples.append(({"errcode": code}, float(n)))
    people = dict(
        Delivery.objects.filter(plan__created_at__gte=since, code__in=PERSON_ERRCODES)
        .values_list("code")
        .annotate(n=Count("id"))
        .order_by()
    )
    samples += [({"errcode": str(code)}, float(people.get(code, 0))) for code in PERSON_ERRCODES]
    return samples


def receipt_poll_lag() -> float:
    """Seconds the most overdue receipt poll has been waiting (0 when none is due)."""
    now = timezone.now()
    oldest = Batch.objects.filter(
        status=BatchStatus.ACCEPTED, receipts_done=False, next_poll_at__lte=now
    ).aggregate(at=Min("next_poll_at"))["at"]
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


def oldest_queued_batch_age() -> float:
    now = timezone.now()
    oldest = Batch.objects.filter(status=BatchStatus.QUEUED).aggregate(at=Min("created_at"))["at"]
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


def quota_use() -> tuple[list[Sample], list[Sample]]:
    governor = get_governor()
    used, quota = [], []
    for department in Department.objects.order_by("code"):
        labels = {"department": department.code}
        used.append((labels, float(governor.monthly_used(app_key=department_app_key(department)))))
        quota.append((labels, float(edition_quota(department.dingtalk_edition))))
    return used, quota


def governor_waits() -> tuple[list[Sample], list[Sample]]:
    """The governor's refusals and the seconds they asked senders to wait, per reason."""
    waits = get_governor().waits()
    counts = [({"reason": reason}, float(n)) for reason, (n, _s) in sorted(waits.items())]
    seconds = [({"reason": reason}, float(s)) for reason, (_n, s) in sorted(waits.items())]
    return counts, seconds


def trigger_to_alert_latency() -> float:
    """Longest seconds from a trigger (last 24 h) to its approvers' alert; 0 when none."""
    since = timezone.now() - RECENT
    triggered = dict(
        Trigger.objects.filter(triggered_at__gte=since, notice__isnull=False).values_list(
            "notice_id", "triggered_at"
        )
    )
    if not triggered:
        return 0.0
    alerts = (
        AuditEvent.objects.filter(
            action=NoticeAuditAction.APPROVERS_ALERTED,
            target_id__in=[str(pk) for pk in triggered],
            occurred_at__gte=since,
        )
        .values("target_id")
        .annotate(first=Min("occurred_at"))
        .order_by()
    )
    latencies = [
        (row["first"] - triggered[int(row["target_id"])]).total_seconds() for row in alerts
    ]
    return max(latencies, default=0.0)


def queue_depths() -> tuple[list[Sample], list[Sample]]:
    """Messages waiting and the oldest one's age per queue (Redis broker only)."""
    url = str(settings.CELERY_BROKER_URL)
    if not url.startswith(("redis://", "rediss://")):
        return [], []
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    depths, ages = [], []
    now = time.time()
    for queue in Queues.ALL:
        keys = [
            queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS
        ]
        pipe = client.pipeline()
        for key in keys:
            pipe.llen(key)
            pipe.lindex(key, -1)  # kombu pushes on the left and takes from the right
        answers = pipe.execute()
        depth = sum(int(n) for n in answers[0::2])
        published = [published_at(raw) for raw in answers[1::2] if raw is not None]
        oldest = min((p for p in published if p is not None), default=None)
        depths.append(({"queue": queue}, float(depth)))
        ages.append(({"queue": queue}, max(0.0, now - oldest) if oldest else 0.0))
    return depths, ages


def published_at(raw: bytes) -> float | None:
    """The time config.celery stamped on a message when it was published."""
    try:
        value = json.loads(raw)["headers"].get("published_at")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def compute() -> dict[str, Any]:
    calls, people = sent_last_minute()
    used, quota = quota_use()
    depths, ages = queue_depths()
    wait_counts, wait_seconds = governor_waits()
    return {
        "governor_waits": wait_counts,
        "governor_wait_seconds": wait_seconds,
        "notices": notices_by_status(),
        "calls": calls,
        "people": people,
        "errcodes": errcode_counts(),
        "receipt_lag": receipt_poll_lag(),
        "queued_batch_age": oldest_queued_batch_age(),
        "quota_used": used,
        "quota": quota,
        "trigger_alert": trigger_to_alert_latency(),
        "queue_depth": depths,
        "queue_age": ages,
    }


def snapshot() -> dict[str, Any]:
    """The figures, computed at most once per ENGINE_METRICS_TTL_S by any process."""
    cached = cache.get(CACHE_KEY)
    if cached is None:
        cached = compute()
        cache.set(CACHE_KEY, cached, timeout=ENGINE_METRICS_TTL_S)
    return dict(cached)


def gauge(name: str, documentation: str, labels: list[str], samples: list[Sample]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric([values[label] for label in labels], value)
    return family


def counter(name: str, documentation: str, labels: list[str], samples: list[Sample]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric([values[label] for label in labels], value)
    return family


class EngineCollector:
    """A prometheus_client collector yielding the engine's figures."""

    def collect(self) -> Iterator[Metric]:
        s = snapshot()
        yield gauge("portal_notices", "Notices by status.", ["status"], s["notices"])
        yield gauge(
            "portal_dingtalk_calls_last_minute",
            "DingTalk send calls accepted in the last minute, per department's app.",
            ["department"],
            s["calls"],
        )
        yield gauge(
            "portal_dingtalk_recipients_last_minute",
            "People in the DingTalk calls accepted in the last minute, per department's app.",
            ["department"],
            s["people"],
        )
        yield gauge(
            "portal_dingtalk_errcode_last_day",
            "Batches refused with 90018 and people with receipt codes 143103-143106, last 24 h.",
            ["errcode"],
            s["errcodes"],
        )
        yield gauge(
            "portal_receipt_poll_lag_seconds",
            "Most overdue receipt poll.",
            [],
            [({}, s["receipt_lag"])],
        )
        yield gauge(
            "portal_oldest_queued_batch_seconds",
            "Age of the oldest batch waiting to be sent (governor waits and backlog).",
            [],
            [({}, s["queued_batch_age"])],
        )
        yield gauge(
            "portal_metered_calls_month",
            "Metered DingTalk calls used this month, per department.",
            ["department"],
            s["quota_used"],
        )
        yield gauge(
            "portal_metered_calls_quota",
            "Metered DingTalk calls allowed a month, per department.",
            ["department"],
            s["quota"],
        )
        yield counter(
            "portal_governor_waits",
            "Sends the rate governor held back, per reason (DingTalk limit, urgent first, pause).",
            ["reason"],
            s["governor_waits"],
        )
        yield counter(
            "portal_governor_wait_seconds",
            "Seconds the rate governor asked held-back sends to wait, per reason.",
            ["reason"],
            s["governor_wait_seconds"],
        )
        yield gauge(
            "portal_trigger_to_approver_alert_seconds",
            "Longest time from a trigger to its approvers' alert, last 24 h.",
            [],
            [({}, s["trigger_alert"])],
        )
        yield gauge(
            "portal_queue_depth", "Messages waiting per Celery queue.", ["queue"], s["queue_depth"]
        )
        yield gauge(
            "portal_queue_oldest_seconds",
            "Age of the oldest message waiting per Celery queue.",
            ["queue"],
            s["queue_age"],
        )
