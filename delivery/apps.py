from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from audit.actions import register
from delivery.audit_actions import DeliveryAuditAction


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = _("Delivery")

    def ready(self) -> None:
        # Imported once the app registry is ready: both modules import models.
        from audit.reports import register_report
        from delivery.receipt_report import REPORT_RECEIPTS, receipts_report

        register(DeliveryAuditAction)
        register_report(REPORT_RECEIPTS, receipts_report)
