"""The only code that puts audit work on a queue: by task name, on the queue each name lists.

audit/tasks.py declares the tasks under these names; nothing here imports it. The nightly
verification is queued by Celery beat under VERIFY_CHAIN (config/settings/audit.py).
"""

from __future__ import annotations

from celery import current_app

from config.settings.celery import Queues

EXPORT_EVENTS = "audit.export_events"
VERIFY_CHAIN = "audit.verify_chain"

# Each task name and the queue its task is declared on.
TASK_QUEUES: dict[str, str] = {
    EXPORT_EVENTS: Queues.BULK,
    VERIFY_CHAIN: Queues.BULK,
}


def _send(name: str, args: tuple[object, ...]) -> None:
    app = current_app
    if name not in app.tasks:
        # Task modules are imported lazily (config/celery.py autodiscovers them when the default
        # modules are imported, as a worker does at start): import them here too, so a process
        # that never imported audit/tasks.py still runs the task eagerly under
        # CELERY_TASK_ALWAYS_EAGER (tests) instead of publishing it by name.
        app.loader.import_default_modules()
    # A signature of a registered task runs eagerly under CELERY_TASK_ALWAYS_EAGER, which
    # app.send_task would not; the worker side only ever sees the name.
    app.signature(name, args=args, options={"queue": TASK_QUEUES[name]}).apply_async()


def export_events(export_id: str) -> None:
    """Queue the writing of one background export's file (audit.exports.export_run)."""
    _send(EXPORT_EVENTS, (export_id,))
