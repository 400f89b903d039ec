from __future__ import annotations

from django.apps import AppConfig

# Neither module imports a model, so both are safe to import while the app registry loads.
from audiences.audit_actions import AudienceAuditAction
from audit.actions import register


class AudiencesConfig(AppConfig):
    name = "audiences"
    verbose_name = "Audiences"

    def ready(self) -> None:
        register(AudienceAuditAction)
