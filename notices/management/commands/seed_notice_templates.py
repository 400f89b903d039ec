from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.models import Department
from notices.templating import templates_seed


class Command(BaseCommand):
    help = "Create or refresh the predefined notice templates (rainstorm warnings, WSD outage)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("codes", nargs="*", help="Department codes (default: every active one)")

    def handle(self, *args: Any, **options: Any) -> None:
        departments = Department.objects.filter(is_active=True)
        if options["codes"]:
            departments = departments.filter(code__in=options["codes"])
        for department in departments.order_by("code"):
            saved = templates_seed(actor=None, department=department)
            self.stdout.write(f"{department.code}: {len(saved)} templates")
