"""Map the Observatory's warning codes to each department's predefined templates (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.models import Department
from integrations.services.warning_mappings import warning_mappings_seed


class Command(BaseCommand):
    help = (
        "Create a warning mapping for every active template whose trigger code is an Observatory "
        "warning code (e.g. WRAINB), with the WRAIN-CANCEL template as its cancellation notice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("codes", nargs="*", help="department codes (default: all active)")

    def handle(self, *args: Any, **options: Any) -> None:
        departments = Department.objects.filter(is_active=True)
        if options["codes"]:
            departments = departments.filter(code__in=options["codes"])
        for department in departments.order_by("code"):
            created = warning_mappings_seed(actor=None, department=department)
            self.stdout.write(
                f"{department.code}: {', '.join(m.code_pattern for m in created) or 'nothing new'}"
            )
