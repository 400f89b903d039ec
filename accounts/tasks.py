"""Celery tasks of the accounts app: ids in, one service call, safe to run twice.

Queued only through accounts.enqueue, by the names declared there.
"""

from __future__ import annotations

import smtplib

from celery import shared_task

from accounts import credentials, enqueue


@shared_task(
    name=enqueue.TELL_USER,
    queue=enqueue.TASK_QUEUES[enqueue.TELL_USER],
    autoretry_for=(smtplib.SMTPException, ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def tell_user_task(change_id: int) -> None:
    credentials.user_tell(change_id=change_id)
