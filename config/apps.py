"""Swap Django's default admin site for the OTP-enforcing one; name the third-party apps the
back office lists (django-axes and django-otp give theirs no name a reader can read)."""

from __future__ import annotations

from axes.apps import AppConfig as AxesAppConfig
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.apps import DefaultConfig as TOTPAppConfig


class PortalAdminConfig(AdminConfig):
    default_site = "config.admin.PortalAdminSite"


class PortalAxesConfig(AxesAppConfig):  # type: ignore[misc]  # django-axes' AppConfig, untyped
    verbose_name = _("Sign-in protection")

    def ready(self) -> None:
        from axes.models import AccessAttempt
        from django.contrib import admin

        from config.thirdparty import PortalAccessAttemptAdmin

        super().ready()
        if admin.site.is_registered(AccessAttempt):  # AXES_ENABLE_ADMIN
            admin.site.unregister(AccessAttempt)
            admin.site.register(AccessAttempt, PortalAccessAttemptAdmin)


class PortalTOTPConfig(TOTPAppConfig):  # type: ignore[misc]  # django-otp ships no type hints
    verbose_name = _("Authenticator apps")

    def ready(self) -> None:
        from django.contrib import admin
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from config.thirdparty import PortalTOTPDeviceAdmin, translate_model_text

        super().ready()
        translate_model_text(self.label)
        # The admin autodiscovery (the first app's ready()) has registered django-otp's own.
        admin.site.unregister(TOTPDevice)
        admin.site.register(TOTPDevice, PortalTOTPDeviceAdmin)
