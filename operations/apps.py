from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from audit.actions import register
from operations.audit_actions import OperationsAuditAction


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = _("Operations")

    def ready(self) -> None:
        register(OperationsAuditAction)
