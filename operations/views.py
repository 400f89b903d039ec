"""Health endpoints for load balancers: no login, plain HTTP allowed, JSON, no secrets."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from common.views import public_view
from operations.health import readiness


@public_view
@never_cache
@require_safe
def live(request: HttpRequest) -> JsonResponse:
    """The process answers requests; it says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


@public_view
@never_cache
@require_safe
def ready(request: HttpRequest) -> JsonResponse:
    """Every dependency reachable (200) or 503 naming each one that is not."""
    outcomes = readiness()
    failing = [name for name, outcome in outcomes.items() if not outcome.ok]
    body = {
        "status": "fail" if failing else "ok",
        "failing": failing,
        "checks": {name: outcome.detail for name, outcome in outcomes.items()},
    }
    return JsonResponse(body, status=503 if failing else 200)
