"""The back office: django-otp's admin site, so every admin request needs a verified session."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django_otp.admin import OTPAdminSite


class PortalAdminSite(OTPAdminSite):  # type: ignore[misc]  # django-otp ships no type hints
    site_header = _("Notice portal back office")
    site_title = _("Notice portal")
    index_title = _("Back office")

    def __init__(self, name: str = "admin") -> None:
        # OTPAdminSite defaults to the name "otpadmin"; keep Django's so admin:… URLs work.
        super().__init__(name)

    def login(
        self, request: HttpRequest, extra_context: dict[str, object] | None = None
    ) -> HttpResponse:
        # One login flow for the whole portal: password, then TOTP (or enrolment).
        target = request.GET.get("next", reverse("admin:index"))
        return HttpResponseRedirect(f"{reverse('accounts:login')}?{urlencode({'next': target})}")
