"""Request context for audit events, carried in a contextvar (wagtail's LogContext idea).

Middleware fills it for web requests; tasks set it from the request id they were given.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class AuditContext:
    request_id: uuid.UUID | None = None
    ip: str | None = None
    otp_verified: bool = False
    # The request's path (the page, admin page or API endpoint an action came by); None outside
    # a request (tasks, commands, a shell).
    path: str | None = None


_current: ContextVar[AuditContext] = ContextVar("audit_context", default=AuditContext())  # noqa: B039  (frozen, so sharing it is safe)


def current_context() -> AuditContext:
    return _current.get()


@contextlib.contextmanager
def audit_context(context: AuditContext) -> Iterator[AuditContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
