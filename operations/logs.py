"""Structured JSON logs for production: one object a line, with the ids that tie lines together.

Each line carries the request id (the same one as the audit trail's and the X-Request-ID
header), the user's id, and, in a Celery task, the task id and the notice or plan id the task was
given. No personal data: mobile numbers in a message are masked, requests are named by their
view (never their path, which can hold a confirmation token), and nothing logs message bodies.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.http import HttpRequest, HttpResponse

CONTEXT_FIELDS = ("request_id", "user_id", "notice_id", "plan_id", "task_id", "task")
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context", default={})  # noqa: B039 - never mutated, only replaced

# A Hong Kong mobile (8 digits from 4 to 9, optionally +852 / 852 and spaces or dashes) or any
# longer run of digits that could be a phone number; the last 2 digits stay for support.
_MOBILE = re.compile(r"(?<!\d)(?:\+?852[\s-]?)?(\d[\s-]?){6,}(\d{2})(?!\d)")

request_log = logging.getLogger("portal.request")


def mask(text: str) -> str:
    return _MOBILE.sub(lambda m: "***" + m.group(2), text)


@contextmanager
def log_context(**values: object) -> Iterator[None]:
    """Add ids to every log line written inside the block."""
    merged = {**_context.get(), **{k: str(v) for k, v in values.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def set_task_context(
    task_id: str, task: str, kwargs: dict[str, Any]
) -> contextvars.Token[dict[str, str]]:
    values = {"task_id": task_id, "task": task}
    for name in ("notice_id", "plan_id"):
        if kwargs.get(name) is not None:
            values[name] = str(kwargs[name])
    return _context.set(values)


def reset_context(token: contextvars.Token[dict[str, str]]) -> None:
    _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current ids onto each record (attach to the handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        for name in (*CONTEXT_FIELDS, "method", "view", "status", "duration_ms"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["traceback"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class LogContextMiddleware:
    """Sets the request's ids for its log lines and writes one line per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        user_id = user.pk if user is not None and user.is_authenticated else None
        started = time.perf_counter()
        with log_context(request_id=getattr(request, "audit_request_id", None), user_id=user_id):
            response = self.get_response(request)
            match = request.resolver_match
            request_log.info(
                "request",
                extra={
                    "method": request.method,
                    "view": match.view_name if match is not None else "unmatched",
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
        return response
