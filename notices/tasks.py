"""Celery tasks of the notices app: ids in, one service call, safe to run twice.

Queued only through notices.enqueue, by the names declared there.
"""

from __future__ import annotations

import smtplib

from celery import shared_task

from notices import alerts, enqueue


@shared_task(
    name=enqueue.ALERT_APPROVERS,
    queue=enqueue.TASK_QUEUES[enqueue.ALERT_APPROVERS],
    autoretry_for=(smtplib.SMTPException, ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def alert_approvers_task(notice_id: int) -> None:
    alerts.approvers_alert(notice_id=notice_id)
