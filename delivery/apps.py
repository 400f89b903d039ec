from __future__ import annotations

from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self) -> None:
        # Imported here, once the app registry is ready: the report's module imports models.
        from audit.actions import register
        from audit.reports import register_report
        from delivery.audit_actions import DeliveryAuditAction
        from delivery.receipt_report import REPORT_RECEIPTS, receipts_report

        register(DeliveryAuditAction)
        register_report(REPORT_RECEIPTS, receipts_report)
