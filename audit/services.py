"""The one way into the audit trail: audit_record appends one event to the hash chain.

audit_record is called inside the same transaction as the change it describes, so a change
that rolls back leaves no event, and an event never describes a change that did not happen.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, models, transaction
from django.utils import timezone, translation

from audit.actions import is_registered
from audit.chain import (
    APPEND_CALL_SQL,
    CHAIN_LOCK_KEY,
    GENESIS_HASH,
    content_hash,
    link_hash,
    normalise_data,
)
from audit.context import current_context
from audit.models import AuditCheckpoint, AuditEvent
from common.types import Actor

# Seconds spent inside audit_record, collected only inside audit_timing() (bench and metrics).
_timings: ContextVar[AuditTimings | None] = ContextVar("audit_timings", default=None)


@dataclass
class AuditTimings:
    """Wall and CPU seconds (of this process) spent inside audit_record, call by call."""

    wall: list[float]
    cpu: list[float]

    def __len__(self) -> int:
        return len(self.wall)


@contextlib.contextmanager
def audit_timing() -> Iterator[AuditTimings]:
    """Collect how long each audit_record call in this context took, to measure audit's cost."""
    collected = AuditTimings(wall=[], cpu=[])
    token = _timings.set(collected)
    try:
        yield collected
    finally:
        _timings.reset(token)


def _snapshot_label(target: models.Model | None) -> str:
    """The target's name in the portal's default language: a snapshot in the hash-chained trail
    must not depend on the language of whoever happened to act (names show in the reader's
    language elsewhere: common.i18n)."""
    if target is None:
        return ""
    with translation.override(settings.LANGUAGE_CODE):
        return str(target)


def _actor_department(actor: AbstractBaseUser) -> str:
    # Cached on the user object, which lives for one request or task: a person's departments
    # do not change in the middle of what they are doing, and a query per event adds up.
    cached = actor.__dict__.get("_audit_actor_department")
    if cached is None:
        codes = sorted({m.department.code for m in actor.memberships.select_related("department")})  # type: ignore[attr-defined]
        cached = actor.__dict__["_audit_actor_department"] = ",".join(codes)
    return str(cached)


def _department_id_of(target: models.Model) -> Any:
    """The department whose trail an event about `target` belongs to, when the caller gave none."""
    if target._meta.label == "accounts.Department":
        return target.pk
    # The id column, not the relation: no query for a department nobody needs to load.
    department_id = getattr(target, "department_id", None)
    if department_id is not None:
        return department_id
    memberships = getattr(target, "memberships", None)
    if memberships is not None:
        # A person's events (logins, second factor) belong to their department, if they have one.
        departments = {m.department_id for m in memberships.all()}
        if len(departments) == 1:
            return departments.pop()
    return None


def _clean_ip(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def locked_head() -> tuple[int, str] | None:
    """Take the chain lock and return the newest event's (sequence, hash), or None if there is none."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT head_sequence, head_hash FROM audit_locked_head(%s)", [CHAIN_LOCK_KEY]
            )
            row = cursor.fetchone()
        return (int(row[0]), str(row[1])) if row else None
    return AuditEvent.objects.order_by("-sequence").values_list("sequence", "hash").first()


def chain_head() -> tuple[int, str]:
    """Sequence and hash of the newest event (or of the newest checkpoint if all were purged)."""
    head = AuditEvent.objects.order_by("-sequence").values_list("sequence", "hash").first()
    if head is not None:
        return head
    checkpoint = (
        AuditCheckpoint.objects.order_by("-sequence").values_list("sequence", "hash").first()
    )
    return checkpoint if checkpoint is not None else (0, GENESIS_HASH)


def audit_record(
    *,
    actor: Actor,
    action: str,
    target: models.Model | None = None,
    target_label: str | None = None,
    department: Any = None,
    data: dict[str, Any] | None = None,
    actor_label: str | None = None,
) -> AuditEvent:
    """Append one event to the chain. `actor=None` means the system (tasks, commands, integrations).

    Holds the chain lock until the caller's transaction ends: call it last in a service, just
    before scheduling side effects, so the lock is held briefly.
    """
    started = time.perf_counter()
    started_cpu = time.process_time()
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
    if department is not None:
        department_id = department.pk
    else:
        department_id = _department_id_of(target) if target is not None else None
    fields: dict[str, Any] = {
        # Stamped before the chain lock is taken: the sequence, not the timestamp, orders the
        # trail (two writers may take the lock in the other order within a millisecond).
        "occurred_at": timezone.now(),
        "actor_id": real_actor.pk if real_actor is not None else None,
        "actor_label": label[:200],
        "actor_department": actor_dept[:200],
        "department_id": department_id,
        "action": str(action),
        "target_type": target._meta.label if target is not None else "",
        "target_id": str(target.pk)[:64] if target is not None else "",
        "target_label": (target_label or _snapshot_label(target))[:300],
        "data": normalise_data(data),
        "request_id": context.request_id,
        "ip": _clean_ip(context.ip),
        "otp_verified": context.otp_verified,
    }
    content = content_hash(fields)
    # savepoint=False: inside the caller's transaction a failure here must fail the caller too.
    with transaction.atomic(savepoint=False):
        if connection.vendor == "postgresql":
            event = _append_postgresql(fields, content)
        else:
            head = locked_head()
            sequence, prev_hash = head if head is not None else chain_head()
            event = AuditEvent(
                **fields,
                sequence=sequence + 1,
                prev_hash=prev_hash,
                hash=link_hash(prev_hash, sequence + 1, content),
                content_hash=content,
            )
            event.save(force_insert=True)
    timings = _timings.get()
    if timings is not None:
        timings.wall.append(time.perf_counter() - started)
        timings.cpu.append(time.process_time() - started_cpu)
    return event


def _append_postgresql(fields: dict[str, Any], content: str) -> AuditEvent:
    """Lock, read the head, link and insert in one round trip (audit_append, migration 0003)."""
    with connection.cursor() as cursor:
        cursor.execute(
            APPEND_CALL_SQL,
            [
                CHAIN_LOCK_KEY,
                fields["occurred_at"],
                fields["actor_id"],
                fields["actor_label"],
                fields["actor_department"],
                fields["department_id"],
                fields["action"],
                fields["target_type"],
                fields["target_id"],
                fields["target_label"],
                json.dumps(fields["data"], ensure_ascii=False),
                fields["request_id"],
                fields["ip"],
                fields["otp_verified"],
                content,
            ],
        )
        row = cursor.fetchone()
    event = AuditEvent(
        **fields,
        id=row[0],
        sequence=row[1],
        prev_hash=row[2],
        hash=row[3],
        content_hash=content,
    )
    # A saved row, as if loaded: nobody may save() it again as a new one.
    event._state.adding = False
    event._state.db = connection.alias
    return event
