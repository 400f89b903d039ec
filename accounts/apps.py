from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Departments and staff")

    def ready(self) -> None:
        # Authentication events (not model signals) are the only hook Django and axes offer;
        # the module imports models, so it is loaded once the app registry is ready.
        from accounts import auth_events  # noqa: F401
