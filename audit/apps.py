from __future__ import annotations

from django.apps import AppConfig

from audit import checks  # noqa: F401  (registers the retention check)
from audit.actions import AuditOwnAction, register


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        register(AuditOwnAction)
