"""After every delivery test that touched the database: each plan's rollups equal a recount.

Every test here drives some state change (sends, polls, reminders, confirmations, recalls,
erasures, flow-control re-sends, held batches...), so this checks the rollup triggers
(delivery.rollup_sql) against all of them, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    names = getattr(item, "fixturenames", ())
    uses_db = bool(set(names) & {"db", "transactional_db"}) or item.get_closest_marker("django_db")
    if outcome.excinfo is not None or not uses_db:
        return
    from delivery.models import DeliveryPlan
    from delivery.rollups import plan_drift

    drifts = {}
    for plan_id in DeliveryPlan.objects.values_list("pk", flat=True):
        drift = plan_drift(plan_id)
        if drift:
            drifts[plan_id] = drift
    assert not drifts, f"rollups differ from a recount of the people: {drifts}"
