from __future__ import annotations

from django.apps import AppConfig

# Both modules hold only TextChoices (no models), so they are safe to import before apps load.
from audit.actions import register
from integrations.audit_actions import IntegrationAuditAction


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        register(IntegrationAuditAction)
