from __future__ import annotations

from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    name = "audiences"
    verbose_name = "Audiences"

    def ready(self) -> None:
        from audiences.audit_actions import AudienceAuditAction
        from audit.actions import register

        register(AudienceAuditAction)
