"""Which live workers serve each queue family (config.settings.celery.Queues.FAMILIES)."""

from __future__ import annotations

from typing import Any

from celery import Celery

from config.settings.celery import Queues


def consumers(app: Celery, timeout: float) -> dict[str, set[str]]:
    """Queue name -> the workers that answered a ping and consume it."""
    pongs = app.control.ping(timeout=timeout) or []
    alive = {name for reply in pongs for name in reply}
    if not alive:
        return {}
    answers = app.control.inspect(destination=sorted(alive), timeout=timeout).active_queues()
    by_queue: dict[str, set[str]] = {}
    for worker, queues in (answers or {}).items():
        for queue in queues:
            by_queue.setdefault(str(queue["name"]), set()).add(str(worker))
    return by_queue


def family_report(app: Celery, timeout: float) -> dict[str, Any]:
    """Each family's answering workers: those consuming every queue of the family."""
    by_queue = consumers(app, timeout)
    families: dict[str, list[str]] = {}
    for family, queues in Queues.FAMILIES.items():
        serving = set.intersection(*(by_queue.get(queue, set()) for queue in queues))
        families[family] = sorted(serving)
    return {"families": families}
