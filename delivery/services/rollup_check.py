"""The rollups' consistency check: recount plans from their people, report and repair drift.

``manage.py rollup_check`` runs it on chosen plans (or all); the sweeper runs it every minute on
a sample of recent plans small enough to recount cheaply (ROLLUP_SAMPLE_MAX_PEOPLE).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from delivery.models import DeliveryPlan, PlanStatus
from delivery.rollups import compact, drift_summary, plan_drift, plan_repair

logger = logging.getLogger("delivery")

ROLLUP_SAMPLE_SIZE = 2
ROLLUP_SAMPLE_MAX_PEOPLE = 200_000
ROLLUP_SAMPLE_DAYS = 7


@dataclass(frozen=True)
class PlanCheck:
    plan_id: int
    drift: dict[tuple[str, str], int]
    repaired: bool

    @property
    def summary(self) -> dict[str, int]:
        return drift_summary(self.drift)


def plan_check(plan_id: int, *, repair: bool) -> PlanCheck:
    """Recount one plan; with `repair`, add the difference so the rollups equal the recount.

    Idempotent: a second run finds nothing (the recount and the rollups are read together).
    """
    with transaction.atomic():
        drift = plan_drift(plan_id)
        if drift and repair:
            plan_repair(plan_id, drift)
    if drift:
        logger.warning(
            "rollups of plan %s differ from a recount: %s%s",
            plan_id,
            drift_summary(drift),
            " (repaired)" if repair else "",
        )
    compact(plan_id)
    return PlanCheck(plan_id, drift, repaired=bool(drift) and repair)


def sample_check(*, now: datetime | None = None, size: int = ROLLUP_SAMPLE_SIZE) -> list[PlanCheck]:
    """The sweeper's share: a random few recent plans of at most ROLLUP_SAMPLE_MAX_PEOPLE."""
    since = (now or timezone.now()) - timedelta(days=ROLLUP_SAMPLE_DAYS)
    plan_ids = list(
        DeliveryPlan.objects.filter(
            created_at__gte=since,
            planned__lte=ROLLUP_SAMPLE_MAX_PEOPLE,
            status__in=(
                PlanStatus.SENDING,
                PlanStatus.DONE,
                PlanStatus.RECALLING,
                PlanStatus.RECALLED,
            ),
        )
        .order_by("?")
        .values_list("pk", flat=True)[:size]
    )
    return [plan_check(plan_id, repair=True) for plan_id in plan_ids]
