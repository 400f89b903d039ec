"""Helpers the audit tests and bench share: tampering on purpose, and quick event builders.

Tampering bypasses the append-only trigger exactly as an attacker with SQL access could
(pgtrigger.ignore); SQLite has no trigger to bypass.
"""

from __future__ import annotations

from typing import Any

import pgtrigger
from django.db import transaction

from audit.models import AuditEvent


def tamper_event(event_id: int, **changes: Any) -> None:
    """UPDATE one stored event behind the service's back."""
    with transaction.atomic(), pgtrigger.ignore("audit.AuditEvent:append_only"):
        AuditEvent.objects.filter(pk=event_id).update(**changes)


def delete_event_behind_the_back(event_id: int) -> None:
    with transaction.atomic(), pgtrigger.ignore("audit.AuditEvent:append_only"):
        AuditEvent.objects.filter(pk=event_id).delete()


def send_notice(notice_id: int, *, attempts: int = 5) -> None:
    """Plan and send a notice through the delivery services, then send again any batch still
    queued: an eager test run cannot wait out a retry (a slow simulator on a busy machine),
    which the sweeper would re-enqueue in production."""
    from delivery import services
    from delivery.models import Batch, BatchStatus

    services.plan_notice(notice_id)
    for _ in range(attempts):
        queued = list(
            Batch.objects.filter(
                dispatch__plan__notice_id=notice_id, status=BatchStatus.QUEUED
            ).values_list("pk", flat=True)
        )
        if not queued:
            return
        for batch_id in queued:
            services.batch_send(batch_id)
