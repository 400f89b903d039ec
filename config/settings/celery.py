"""Celery settings. Schedules live here, in code, so review covers every change to them."""

from __future__ import annotations

from config.env import env_int, env_str


class Queues:
    """Every queue a task may name. tests/test_celery_queues.py checks each has a worker."""

    URGENT = "urgent"
    SEND = "send"
    RECEIPTS = "receipts"
    DEFAULT = "default"
    BULK = "bulk"

    ALL = (URGENT, SEND, RECEIPTS, DEFAULT, BULK)
    # Worker families: each runs as its own worker (deploy/portal-worker@.service), on any
    # number of machines. `manage.py celery_health` pings each family.
    FAMILIES: dict[str, tuple[str, ...]] = {
        "urgent": (URGENT,),
        "send": (SEND,),
        "receipts": (RECEIPTS,),
        "bulk": (BULK, DEFAULT),
    }


class Priority:
    """Message priorities as kombu's Redis transport and config.broker's file-system one read
    them: a LOWER number is taken first (kombu's Redis keeps one list per step of
    PRIORITY_STEPS and pops step 0 first; AMQP's "9 is highest" does not apply here)."""

    URGENT = 0
    NORMAL = 6


PRIORITY_STEPS = [0, 3, 6, 9]

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
# A message queued without a priority (beat, other apps) ranks with normal work, never ahead
# of urgent work (kombu's default, 0, would be the highest).
CELERY_TASK_DEFAULT_PRIORITY = Priority.NORMAL
CELERY_TASK_DEFAULT_QUEUE = Queues.DEFAULT
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
CELERY_TIMEZONE = "Asia/Hong_Kong"
# Redis redelivers an unacknowledged task after this; retries and countdowns stay below it.
# priority_steps: the priorities Redis keeps apart. queue_order_strategy "priority": a worker
# asks its queues in the order it lists them (urgent first) instead of round-robin.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 3600),
    "priority_steps": PRIORITY_STEPS,
    "queue_order_strategy": "priority",
}
# Celery's Django fix-up closes database connections after every task unless this is set;
# config.celery applies CONN_MAX_AGE and health checks around each task instead, and the
# fix-up only closes them outright every few thousand tasks.
CELERY_DB_REUSE_MAX = 5000
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}

# Beat: with a Redis broker the schedule lives in Redis (celery-redbeat) behind a lock, so a
# beat may run on every machine and exactly one of them schedules; the others wait for the lock
# and take over within REDBEAT_LOCK_TIMEOUT seconds of the holder's death. The embedded default
# (file-system broker) keeps Celery's own file-based scheduler.
CELERY_REDBEAT_REDIS_URL = env_str("REDBEAT_REDIS_URL", "") or CELERY_BROKER_URL
CELERY_REDBEAT_KEY_PREFIX = env_str("REDBEAT_KEY_PREFIX", "portal:redbeat")
CELERY_REDBEAT_LOCK_TIMEOUT = env_int("REDBEAT_LOCK_TIMEOUT", 30)
CELERY_REDBEAT_REDIS_OPTIONS: dict[str, object] = {}
# Beat wakes at least this often, extending its lock (well inside the lock's timeout).
CELERY_BEAT_MAX_LOOP_INTERVAL = 5
if CELERY_REDBEAT_REDIS_URL.startswith(("redis://", "rediss://")):
    CELERY_BEAT_SCHEDULER = "redbeat.RedBeatScheduler"
