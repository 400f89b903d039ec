"""The portal's own 400, 403, 404 and 500 pages and the CSRF failure page, in the base layout.

Django's defaults render bare, English-only pages (the CSRF one its own inline HTML). These render
the templates in templates/ in the reader's language (LocaleMiddleware has already activated it).
The 500 page renders without the request: its context processors read the database and the
session, either of which may be what failed.
"""

from __future__ import annotations

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotFound,
    HttpResponseServerError,
)
from django.template import loader


def _render(request: HttpRequest, template: str, status: int) -> str:
    return loader.render_to_string(template, {"status_code": status}, request=request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return HttpResponseBadRequest(_render(request, "400.html", 400))


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return HttpResponseForbidden(_render(request, "403.html", 403))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: the reason is for logs, not for the reader."""
    return HttpResponseForbidden(_render(request, "403_csrf.html", 403))


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return HttpResponseNotFound(_render(request, "404.html", 404))


def server_error(request: HttpRequest) -> HttpResponse:
    html = loader.render_to_string("500.html", {"status_code": 500})
    return HttpResponseServerError(html)
