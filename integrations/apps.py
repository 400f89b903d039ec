from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

# Both modules hold only TextChoices (no models), so they are safe to import before apps load.
from audit.actions import register
from integrations.audit_actions import IntegrationAuditAction


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = _("Integrations")

    def ready(self) -> None:
        register(IntegrationAuditAction)
