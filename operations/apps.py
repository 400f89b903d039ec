from __future__ import annotations

from django.apps import AppConfig

from audit.actions import register
from operations.audit_actions import OperationsAuditAction


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        register(OperationsAuditAction)
