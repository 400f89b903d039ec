from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from audit import checks  # noqa: F401  (registers the retention check)
from audit.actions import AuditOwnAction, register


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = _("Audit trail")

    def ready(self) -> None:
        register(AuditOwnAction)
