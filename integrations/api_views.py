"""Machine endpoints: signed webhooks, CAP 1.2 alerts and trigger status.

Public (no staff session) and CSRF-exempt because callers are machines; every request is
authenticated by its HMAC signature in integrations.services.signing instead. Every refusal is a JSON
body {"error": {"status", "code", "message"}} with the same status.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from audit.middleware import client_ip
from common.views import public_view
from integrations.errors import TriggerRefused
from integrations.models import Trigger
from integrations.services import cap_alerts, signing, triggers, webhooks

TIMESTAMP_HEADER = "X-Portal-Timestamp"
SIGNATURE_HEADER = "X-Portal-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def _refusal_response(refusal: TriggerRefused) -> JsonResponse:
    response = JsonResponse(refusal.as_dict(), status=refusal.status)
    if refusal.retry_after is not None:
        response["Retry-After"] = str(refusal.retry_after)
    return response


def _method_refused(allowed: str) -> JsonResponse:
    response = _refusal_response(
        TriggerRefused(405, "method_not_allowed", f"Use {allowed} on this address.")
    )
    response["Allow"] = allowed
    return response


def _content_length(request: HttpRequest) -> int | None:
    raw = request.META.get("CONTENT_LENGTH") or ""
    return int(raw) if raw.isdigit() else None


def _signed_request(
    request: HttpRequest, slug: str, endpoint: signing.Endpoint, max_bytes: int
) -> signing.SignedRequest:
    length = _content_length(request)
    # Never read more than one byte past the limit, whatever Content-Length claims.
    body = b"" if length is not None and length > max_bytes else request.read(max_bytes + 1)
    return signing.SignedRequest(
        slug=slug,
        endpoint=endpoint,
        timestamp=request.headers.get(TIMESTAMP_HEADER, "").strip(),
        signature=request.headers.get(SIGNATURE_HEADER, "").strip(),
        body=body,
        max_bytes=max_bytes,
        content_length=length,
        content_type=(request.content_type or "").lower(),
        source=client_ip(request),
    )


def _trigger_body(request: HttpRequest, trigger: Trigger, *, repeated: bool) -> dict[str, object]:
    integration = trigger.integration
    status_url = (
        request.build_absolute_uri(
            reverse(
                "api:trigger-status",
                kwargs={"integration": integration.slug, "trigger_id": trigger.public_id},
            )
        )
        if integration is not None
        else None
    )
    notice = trigger.notice
    return {
        "trigger_id": str(trigger.public_id),
        "notice_id": trigger.notice_id,
        "status": notice.status if notice is not None else None,
        "status_url": status_url,
        "triggered_at": trigger.triggered_at.isoformat(),
        "repeated": repeated,
    }


@public_view
@csrf_exempt
def trigger_webhook(request: HttpRequest, integration: str) -> JsonResponse:
    """POST /api/triggers/<integration>/ {"template": code, "values": {...}}, signed."""
    if request.method != "POST":
        return _method_refused("POST")
    signed = _signed_request(
        request, integration, signing.Endpoint.WEBHOOK, settings.INTEGRATIONS_WEBHOOK_MAX_BYTES
    )
    try:
        result = webhooks.webhook_receive(
            request=signed, idempotency_key=request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        )
    except TriggerRefused as refusal:
        return _refusal_response(refusal)
    return JsonResponse(
        _trigger_body(request, result.trigger, repeated=result.repeated),
        status=200 if result.repeated else 201,
    )


@public_view
@csrf_exempt
def cap_alert(request: HttpRequest, integration: str) -> JsonResponse:
    """POST /api/cap/<integration>/ with a CAP 1.2 document, signed."""
    if request.method != "POST":
        return _method_refused("POST")
    signed = _signed_request(
        request, integration, signing.Endpoint.CAP, settings.INTEGRATIONS_CAP_MAX_BYTES
    )
    try:
        result = cap_alerts.cap_receive(request=signed)
    except TriggerRefused as refusal:
        return _refusal_response(refusal)
    body = _trigger_body(request, result.trigger, repeated=result.repeated)
    body["cancellations"] = [
        {"notice_id": c.notice_id, "state": c.state} for c in result.cancellations
    ]
    return JsonResponse(body, status=200 if result.repeated else 201)


@public_view
@csrf_exempt
def trigger_status(request: HttpRequest, integration: str, trigger_id: uuid.UUID) -> JsonResponse:
    """GET the state of a trigger's notice; signed over the timestamp and an empty body."""
    if request.method != "GET":
        return _method_refused("GET")
    signed = _signed_request(request, integration, signing.Endpoint.STATUS, 0)
    try:
        trigger = triggers.trigger_status_read(request=signed, public_id=str(trigger_id))
    except TriggerRefused as refusal:
        return _refusal_response(refusal)
    body = _trigger_body(request, trigger, repeated=False)
    notice = trigger.notice
    if notice is not None:
        body.update(
            submitted_at=notice.submitted_at.isoformat() if notice.submitted_at else None,
            approved_at=notice.approved_at.isoformat() if notice.approved_at else None,
        )
    return JsonResponse(body)
