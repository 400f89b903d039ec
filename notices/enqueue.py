"""The only code that puts notices work on a queue: by task name, on the queue each name lists.

notices/tasks.py declares the tasks under these names; nothing here imports it, so the services
may call these functions (on commit) without importing the tasks.
"""

from __future__ import annotations

from celery import current_app

from config.settings.celery import Queues

ALERT_APPROVERS = "notices.alert_approvers"

# Each task name and the queue its task is declared on.
TASK_QUEUES: dict[str, str] = {
    ALERT_APPROVERS: Queues.URGENT,
}


def alert_approvers(notice_id: int) -> None:
    """Queue the alert telling the department's supervisors that a submitted notice waits."""
    # A signature of a registered task runs eagerly under CELERY_TASK_ALWAYS_EAGER (tests), which
    # app.send_task would not; the worker side only ever sees the name.
    current_app.signature(
        ALERT_APPROVERS, args=(notice_id,), options={"queue": TASK_QUEUES[ALERT_APPROVERS]}
    ).apply_async()
