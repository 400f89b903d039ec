"""The one way into the audit trail.

audit_record is called inside the same transaction as the change it describes, so a change
that rolls back leaves no event, and an event never describes a change that did not happen.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models
from django.utils import timezone

from audit.actions import is_registered
from audit.context import current_context
from audit.models import AuditEvent


def _actor_department(actor: AbstractBaseUser) -> str:
    codes = sorted({m.department.code for m in actor.memberships.select_related("department")})  # type: ignore[attr-defined]
    return ",".join(codes)


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    action: str,
    target: models.Model | None = None,
    target_label: str | None = None,
    department: Any = None,
    data: dict[str, Any] | None = None,
    actor_label: str | None = None,
) -> AuditEvent:
    """Append one event. `actor=None` means the system (tasks, commands, integrations)."""
    if not is_registered(action):
        raise ValueError(f"Unregistered audit action {action!r}: register it in the app's ready().")
    context = current_context()
    real_actor = actor if actor is not None and actor.is_authenticated else None
    if real_actor is not None:
        label = actor_label or real_actor.get_username()
        actor_dept = _actor_department(real_actor)
    else:
        label = actor_label or "system"
        actor_dept = ""
    if department is None and target is not None:
        department = getattr(target, "department", None)
        if department is None and target._meta.label == "accounts.Department":
            department = target
    return AuditEvent.objects.create(
        occurred_at=timezone.now(),
        actor=real_actor,
        actor_label=label[:200],
        actor_department=actor_dept[:200],
        department=department,
        action=action,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=(target_label or (str(target) if target is not None else ""))[:300],
        data=data or {},
        request_id=context.request_id,
        ip=context.ip,
        otp_verified=context.otp_verified,
    )
