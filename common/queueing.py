"""Queue a Celery task by its name: what every app's enqueue module calls.

Apps never import each other's task modules (nor their own from services): each app's
enqueue.py names its tasks with string constants and sends them through here.
"""

from __future__ import annotations

from celery import current_app


def send_by_name(
    name: str,
    args: tuple[object, ...],
    *,
    queue: str,
    priority: int | None = None,
    countdown: float = 0,
) -> None:
    """Queue task `name` with `args` on `queue` (with a priority and a countdown if given)."""
    app = current_app
    if name not in app.tasks:
        # Task modules are imported lazily (config/celery.py autodiscovers them when the default
        # modules are imported, as a worker does at start): import them here too, so a process
        # that never imported the app's tasks.py still runs the task eagerly under
        # CELERY_TASK_ALWAYS_EAGER (tests) instead of publishing it by name.
        app.loader.import_default_modules()
    options: dict[str, object] = {"queue": queue}
    if priority is not None:
        options["priority"] = priority
    if countdown:
        options["countdown"] = countdown
    # A signature of a registered task runs eagerly under CELERY_TASK_ALWAYS_EAGER, which
    # app.send_task would not; the worker side only ever sees the name.
    app.signature(name, args=args, options=options).apply_async()
