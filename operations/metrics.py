"""Prometheus metrics: request counts and durations, plus the engine's own figures.

Under gunicorn each worker process counts its own requests; with PROMETHEUS_MULTIPROC_DIR set
(the web unit sets it) prometheus_client writes them to files there and a scrape of any process
adds up all of them (config/gunicorn.py removes a dead process's gauges). The engine's figures
come from the shared stores (operations.engine_metrics), so they are whole whichever process
answers.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections.abc import Callable

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from common.views import public_view
from operations.engine_metrics import EngineCollector

REQUESTS = Counter(
    "portal_http_requests",
    "HTTP requests answered, by view and status code.",
    ["method", "view", "status"],
)
LATENCY = Histogram(
    "portal_http_request_duration_seconds",
    "Time to answer an HTTP request, by view.",
    ["view"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


class RequestMetricsMiddleware:
    """Counts every response by view name (never the path: ids would explode the labels)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        view = match.view_name if match is not None else "unmatched"
        REQUESTS.labels(request.method or "", view, str(response.status_code)).inc()
        LATENCY.labels(view).observe(time.perf_counter() - started)
        return response


def allowed(request: HttpRequest) -> bool:
    """The scraper shows METRICS_TOKEN as a bearer token, or comes from METRICS_NETWORKS."""
    token = str(settings.METRICS_TOKEN)
    if token:
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
    networks = list(settings.METRICS_NETWORKS)
    if networks:
        try:
            peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(peer in ipaddress.ip_network(net, strict=False) for net in networks)
    return False


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
    else:
        reg.register(REQUESTS)
        reg.register(LATENCY)
    reg.register(EngineCollector())
    return reg


@public_view
@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text format; 404 to anyone without the token or outside the networks."""
    if not allowed(request):
        raise Http404
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
