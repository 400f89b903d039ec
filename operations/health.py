"""Readiness checks for a load balancer: each dependency the portal needs to do its work.

Each check answers "ok" or the name of what went wrong (an exception class, never a message:
a driver's message can carry a host name, a user or a password from a connection string).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from kombu import Connection

from delivery.governor import get_governor

CHECK_TIMEOUT_S = 3


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str


def check_database() -> Outcome:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return Outcome(True, "ok")


def check_migrations() -> Outcome:
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        return Outcome(False, f"{len(pending)} migrations not applied")
    return Outcome(True, "ok")


def check_broker() -> Outcome:
    transport = getattr(settings, "CELERY_BROKER_TRANSPORT", None)
    options = dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}))
    with Connection(
        settings.CELERY_BROKER_URL,
        transport=transport,
        transport_options=options,
        connect_timeout=CHECK_TIMEOUT_S,
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)
    return Outcome(True, "ok")


def check_cache() -> Outcome:
    cache.set("health:probe", "1", timeout=30)
    if cache.get("health:probe") != "1":
        return Outcome(False, "value written was not read back")
    return Outcome(True, "ok")


def check_governor() -> Outcome:
    if not get_governor().healthy():
        return Outcome(False, "store unreachable")
    return Outcome(True, "ok")


CHECKS: dict[str, Callable[[], Outcome]] = {
    "database": check_database,
    "migrations": check_migrations,
    "broker": check_broker,
    "cache": check_cache,
    "governor": check_governor,
}


def run_check(check: Callable[[], Outcome]) -> Outcome:
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency is "not ready"
        return Outcome(False, type(exc).__name__)


def readiness(checks: dict[str, Callable[[], Outcome]] | None = None) -> dict[str, Outcome]:
    """Every check's outcome, in order. A database failure skips the migrations check."""
    outcomes: dict[str, Outcome] = {}
    for name, check in (checks or CHECKS).items():
        if name == "migrations" and not outcomes.get("database", Outcome(True, "")).ok:
            outcomes[name] = Outcome(False, "database unreachable")
            continue
        outcomes[name] = run_check(check)
    return outcomes
