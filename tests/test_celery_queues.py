"""Every declared queue has a worker, and every task names a declared queue."""

from __future__ import annotations

import re
from pathlib import Path

from config.celery import app
from config.settings.celery import Queues

ROOT = Path(__file__).resolve().parent.parent


def worker_queues() -> set[str]:
    script = (ROOT / "bin" / "run-dev").read_text()
    matches = re.findall(r"celery -A config worker .*-Q (\S+)", script)
    assert matches, "bin/run-dev starts no worker"
    return {queue for match in matches for queue in match.split(",")}


def test_urgent_work_has_a_worker_of_its_own() -> None:
    script = (ROOT / "bin" / "run-dev").read_text()
    assert re.search(r"celery -A config worker .*-Q urgent(\s|$)", script, re.MULTILINE)


def test_every_queue_has_a_worker() -> None:
    assert set(Queues.ALL) == worker_queues()


def test_every_project_task_is_named_and_queued() -> None:
    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    for name, task in ours.items():
        assert "." in name, name
        assert not name.startswith(("accounts.tasks", "audit.tasks")), name
        assert task.queue in Queues.ALL, f"{name} has no declared queue"


def test_worker_settings_are_safe_for_idempotent_tasks(settings) -> None:
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_ACCEPT_CONTENT == ["json"]
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1


def test_audiences_enqueue_names_are_registered_tasks_on_the_queues_the_readme_lists() -> None:
    from audiences import enqueue

    app.loader.import_default_modules()
    readme = (ROOT / "audiences" / "README.md").read_text()
    names = {
        value
        for key, value in vars(enqueue).items()
        if key.isupper() and isinstance(value, str) and value.startswith("audiences.")
    }
    assert names == set(enqueue.TASK_QUEUES)
    for name in names:
        assert name in app.tasks, f"{name} is not a registered task"
        queue = enqueue.TASK_QUEUES[name]
        assert app.tasks[name].queue == queue, name
        assert f"`{name}` ({queue})" in readme, f"README does not list {name} on {queue}"


def readme_task_queues(app_label: str) -> dict[str, str]:
    """The app README's "Tasks and their queues" table: task name -> first word of its queue."""
    text = (ROOT / app_label / "README.md").read_text()
    text = text.split("## Tasks and their queues", 1)[-1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w.]+)` \| (\w+)", text, re.MULTILINE)
    assert rows, f"{app_label}/README.md lists no tasks"
    return dict(rows)


def test_every_delivery_task_name_enqueue_sends_is_registered_on_the_queue_the_readme_lists() -> (
    None
):
    from delivery import enqueue

    app.loader.import_default_modules()
    listed = readme_task_queues("delivery")
    assert set(listed) == set(enqueue.TASK_QUEUES)
    for name, queue in enqueue.TASK_QUEUES.items():
        assert name in app.tasks, f"{name} is sent but no task is registered under it"
        assert app.tasks[name].queue == queue == listed[name], name
