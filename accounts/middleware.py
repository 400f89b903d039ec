"""Default-deny for staff pages, and the session's idle and absolute lifetimes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from accounts.auth import LOGIN_AT_SESSION_KEY
from common.types import is_verified

# Where a session keeps when it was last saved for activity, and how often activity saves it.
TOUCHED_SESSION_KEY = "portal_touched_at"
TOUCH_EVERY_S = 60


class SessionLifetimeMiddleware:
    """Ends a session a fixed time after login, however active it is, and keeps an active one
    from idling out.

    The idle timeout is the session's age (SESSION_COOKIE_AGE after its last save). Activity
    saves it at most once every TOUCH_EVERY_S seconds, not on every request: a dashboard's
    poll every 2 s would otherwise be a database write every 2 s for each person watching.
    A session then idles out between SESSION_COOKIE_AGE - TOUCH_EVERY_S and SESSION_COOKIE_AGE
    after the last request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = time.time()
            started = request.session.get(LOGIN_AT_SESSION_KEY)
            if started is None or now - float(started) > settings.SESSION_ABSOLUTE_SECONDS:
                logout(request)
                messages.info(request, _("Your session has ended. Please log in again."))
            elif now - float(request.session.get(TOUCHED_SESSION_KEY, 0)) >= TOUCH_EVERY_S:
                request.session[TOUCHED_SESSION_KEY] = int(now)  # saved with a new expiry
        return self.get_response(request)


class RequireVerifiedStaffMiddleware:
    """Every view needs a logged-in, OTP-verified session unless it is marked otherwise.

    Marking is explicit (common.views.public_view / pre_otp_view), and a test walks the URL
    configuration to prove each unmarked view refuses an unverified session.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        if getattr(view_func, "otp_exempt", False):
            return None
        user = request.user
        if not user.is_authenticated:
            return HttpResponseRedirect(
                f"{reverse('accounts:login')}?{urlencode({'next': request.get_full_path()})}"
            )
        if getattr(view_func, "otp_pre_verification", False):
            return None
        if not is_verified(user):
            return HttpResponseRedirect(
                f"{reverse('accounts:verify')}?{urlencode({'next': request.get_full_path()})}"
            )
        return None
