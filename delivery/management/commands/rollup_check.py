"""Recount plans' rollups from their people and report (optionally repair) any drift."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from delivery.models import DeliveryPlan
from delivery.services.rollup_check import plan_check


class Command(BaseCommand):
    help = (
        "Recount delivery plans' rollups from their people and report any drift "
        "(exit status 1 when some was found). --fix adds the difference."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--notice", type=int, action="append", default=[], help="notice id")
        parser.add_argument("--plan", type=int, action="append", default=[], help="plan id")
        parser.add_argument("--all", action="store_true", help="every plan")
        parser.add_argument("--fix", action="store_true", help="repair the drift found")

    def handle(self, *args: Any, **options: Any) -> None:
        plans = DeliveryPlan.objects.order_by("pk")
        if not options["all"]:
            plans = plans.filter(pk__in=options["plan"]) | plans.filter(
                notice_id__in=options["notice"]
            )
        drifted = 0
        for plan_id, notice_id in plans.values_list("pk", "notice_id"):
            check = plan_check(plan_id, repair=options["fix"])
            if check.drift:
                drifted += 1
                verb = "repaired" if check.repaired else "found"
                self.stdout.write(
                    f"plan {plan_id} (notice {notice_id}): drift {verb}: {check.summary}"
                )
            else:
                self.stdout.write(f"plan {plan_id} (notice {notice_id}): rollups agree")
        if drifted and not options["fix"]:
            raise SystemExit(1)
