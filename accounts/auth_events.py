"""Records lockouts. django-axes decides them inside authenticate(), so its signal is the only hook."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.dispatch import receiver

from audit.actions import AuditAction
from audit.services import audit_record


@receiver(user_locked_out, dispatch_uid="accounts.audit_lockout")
def audit_lockout(
    sender: Any,
    request: Any = None,
    username: str | None = None,
    ip_address: str | None = None,
    **kwargs: Any,
) -> None:
    audit_record(
        actor=None,
        action=AuditAction.LOCKED_OUT,
        actor_label=f"unauthenticated ({(username or '')[:150]})",
        data={"username": username or "", "ip": ip_address or ""},
    )
