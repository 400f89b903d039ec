from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

# Neither module imports a model, so both are safe to import while the app registry loads.
from audiences.audit_actions import AudienceAuditAction
from audit.actions import register


class AudiencesConfig(AppConfig):
    name = "audiences"
    verbose_name = _("Audiences")

    def ready(self) -> None:
        register(AudienceAuditAction)
