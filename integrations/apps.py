from __future__ import annotations

from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from audit.actions import register
        from integrations.audit_actions import IntegrationAuditAction

        register(IntegrationAuditAction)
