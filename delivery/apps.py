from __future__ import annotations

from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self) -> None:
        from audit.actions import register
        from delivery.audit_actions import DeliveryAuditAction

        register(DeliveryAuditAction)
