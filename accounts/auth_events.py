"""Records lockouts. django-axes decides them inside authenticate(), so its signal is the only hook."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.dispatch import receiver

from accounts.auth import record_login_failure
from audit.actions import AuditAction


@receiver(user_locked_out, dispatch_uid="accounts.audit_lockout")
def audit_lockout(
    sender: Any,
    request: Any = None,
    username: str | None = None,
    ip_address: str | None = None,
    **kwargs: Any,
) -> None:
    record_login_failure(AuditAction.LOCKED_OUT, username or "", {"ip": ip_address or ""})
