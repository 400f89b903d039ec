"""Celery tasks of the notices app: ids in, one service call, safe to run twice."""

from __future__ import annotations

import smtplib

from celery import shared_task

from config.settings.celery import Queues


@shared_task(
    name="notices.alert_approvers",
    queue=Queues.URGENT,
    autoretry_for=(smtplib.SMTPException, ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def alert_approvers_task(notice_id: int) -> None:
    from notices.alerts import approvers_alert

    approvers_alert(notice_id=notice_id)
