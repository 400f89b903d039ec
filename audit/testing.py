"""Helpers the audit tests and bench share: tampering with stored events on purpose.

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
