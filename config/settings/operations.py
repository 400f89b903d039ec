"""Operations settings: the daily data-lifecycle and audit-anchor tasks."""

from __future__ import annotations

from celery.schedules import crontab

from config.settings.celery import Queues

OPERATIONS_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "operations-apply-retention": {
        "task": "operations.apply_retention",
        "schedule": crontab(hour=2, minute=45),
        "options": {"queue": Queues.BULK},
    },
}
