"""The only code that puts accounts work on a queue: by task name, on the queue each name lists.

accounts/tasks.py declares the tasks under these names; the services call these functions on
commit without importing the tasks.
"""

from __future__ import annotations

from common.queueing import send_by_name
from config.settings.celery import Queues

TELL_USER = "accounts.tell_user"

# Each task name and the queue its task is declared on.
TASK_QUEUES: dict[str, str] = {
    TELL_USER: Queues.URGENT,
}


def tell_user(change_id: int) -> None:
    """Queue the message telling a person about a change to their credentials or roles (with
    their one-time enrolment link once a reset applies)."""
    send_by_name(TELL_USER, (change_id,), queue=TASK_QUEUES[TELL_USER])
