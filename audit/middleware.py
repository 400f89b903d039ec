"""Puts the request id, client IP and OTP state where audit_record can find them."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit.context import AuditContext, audit_context
from common.types import is_verified


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: a reverse proxy must set it (trusting X-Forwarded-For lets clients lie).
    return request.META.get("REMOTE_ADDR") or None


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        verified = is_verified(user)
        context = AuditContext(
            request_id=uuid.uuid4(),
            ip=client_ip(request),
            otp_verified=verified,
            path=request.path[:300],
        )
        request.audit_request_id = context.request_id  # type: ignore[attr-defined]
        with audit_context(context):
            response = self.get_response(request)
        response["X-Request-ID"] = str(context.request_id)
        return response
