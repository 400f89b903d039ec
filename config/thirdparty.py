"""Third-party apps' text in the reader's language (locale_thirdparty/, README "Translations").

django-axes marks its text for translation but ships no Chinese: locale_thirdparty/ translates
it as it is, save the attempt list's status column, which Django titles from the method's name
(``PortalAccessAttemptAdmin``). django-otp (1.7) marks none of the text its back-office pages show: the TOTP
device's model and field names, help texts, fieldset titles and the QR code column are plain
English. ``translate_model_text`` and ``PortalTOTPDeviceAdmin`` hand that same English to gettext,
so the catalogue, keyed by the library's own English, translates it. The English stays the
msgid, so migrations see no change (makemigrations compares with translation turned off).
"""

from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.apps import apps
from django.db.models import Field
from django.forms.utils import pretty_name
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import translation
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext, gettext_lazy
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_stubs_ext import StrOrPromise

# django-otp's link text in the TOTP device list's QR code column (hard-coded in its admin).
QR_LINK_TEXT = "qrcode"


def translatable(text: StrOrPromise) -> StrOrPromise:
    """``text`` looked up in the catalogues when shown; empty or already lazy text as it is."""
    if isinstance(text, str) and text:
        return gettext_lazy(text)
    return text


def translate_model_text(app_label: str) -> None:
    """Route an app's model and field names and help texts through gettext."""
    for model in apps.get_app_config(app_label).get_models():
        opts = model._meta
        # Django makes a missing plural lazily ("{}s" of the name): its English is the msgid.
        with translation.override(None):
            name, plural = str(opts.verbose_name), str(opts.verbose_name_plural)
        opts.verbose_name = translatable(name)
        opts.verbose_name_plural = translatable(plural)
        for field in opts.get_fields():
            if isinstance(field, Field):
                field.verbose_name = translatable(field.verbose_name)
                field.help_text = translatable(field.help_text)


class PortalTOTPDeviceAdmin(TOTPDeviceAdmin):  # type: ignore[misc]  # django-otp has no hints
    """django-otp's TOTP device admin with its own English handed to gettext."""

    search_help_text = translatable(TOTPDeviceAdmin.search_help_text)

    def get_fieldsets(
        self, request: HttpRequest, obj: TOTPDevice | None = None
    ) -> list[tuple[Any, dict[str, Any]]]:
        return [
            (translatable(name) if name else name, options)
            for name, options in super().get_fieldsets(request, obj)
        ]

    def qrcode_link(self, device: TOTPDevice) -> SafeString | str:
        try:
            href = reverse("admin:otp_totp_totpdevice_config", kwargs={"pk": device.pk})
        except NoReverseMatch:
            return ""
        return format_html('<a href="{}">{}</a>', href, gettext(QR_LINK_TEXT))

    qrcode_link.short_description = translatable(  # type: ignore[attr-defined]
        TOTPDeviceAdmin.qrcode_link.short_description
    )


class PortalAccessAttemptAdmin(AccessAttemptAdmin):  # type: ignore[misc]  # django-axes: untyped
    """django-axes' attempt list with its status column's title handed to gettext."""

    def status(self, obj: AccessAttempt) -> str:
        return str(super().status(obj))

    status.short_description = translatable(pretty_name("status"))  # type: ignore[attr-defined]
