"""Names and queues of the operations tasks (beat queues them by these names)."""

from __future__ import annotations

from config.settings.celery import Queues

APPLY_RETENTION = "operations.apply_retention"

TASK_QUEUES = {APPLY_RETENTION: Queues.BULK}
