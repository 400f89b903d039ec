"""Urgent work first on every broker: priorities and queue order mean the same on Redis and on
the embedded file-system broker (config.broker), with the settings workers run with."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from kombu import Consumer, Queue

from config.settings.celery import PRIORITY_STEPS, Priority, Queues


def app_for(broker_url: str, transport_options: dict[str, object], transport: str = "") -> Celery:
    app = Celery("priority-test", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_transport_options=transport_options,
        task_default_priority=settings.CELERY_TASK_DEFAULT_PRIORITY,
        task_serializer="json",
        accept_content=["json"],
    )
    if transport:
        app.conf.broker_transport = transport
    return app


def taken_order(app: Celery, queues: list[str]) -> list[str]:
    """Publish bulk, then beat-like and urgent work; return the order a worker on every queue
    (listed urgent first, as the workers list them) takes the messages in."""
    urgent, send, receipts = queues[0], queues[1], queues[2]
    for n in range(6):
        app.send_task("bulk", args=[n], queue=send, priority=Priority.NORMAL)
    app.send_task("poll", queue=receipts)  # no priority: the default, normal
    app.send_task("urgent-plan", queue=urgent, priority=Priority.URGENT)
    app.send_task("urgent-send", queue=urgent, priority=Priority.URGENT)
    app.send_task("sweep", queue=urgent)
    taken: list[str] = []
    with app.connection_for_read() as connection:

        def take(body: object, message) -> None:
            taken.append(message.headers["task"])
            message.ack()

        consumer = Consumer(
            connection.default_channel,
            queues=[Queue(name, routing_key=name) for name in queues],
            callbacks=[take],
            accept=["json"],
        )
        consumer.qos(prefetch_count=1)
        with consumer:
            for _ in range(40):
                if len(taken) == 10:
                    break
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    continue
    return taken


def assert_urgent_first(taken: list[str]) -> None:
    assert len(taken) == 10, taken
    assert taken[:2] == ["urgent-plan", "urgent-send"], taken
    # Normal work of the urgent queue (the sweep) before the bulk piled up elsewhere.
    assert taken[2] == "sweep", taken
    assert sorted(taken[3:]) == sorted(["bulk"] * 6 + ["poll"]), taken


def test_the_file_system_broker_takes_urgent_work_first(tmp_path: Path) -> None:
    folder = str(tmp_path / "broker")
    Path(folder).mkdir()
    options = {
        "data_folder_in": folder,
        "data_folder_out": folder,
        "store_processed": False,
        "control_folder": str(tmp_path / "control"),
        "queue_order_strategy": "priority",
    }
    app = app_for("filesystem://", options, transport="config.broker:Transport")
    assert_urgent_first(taken_order(app, list(Queues.ALL)))


def test_redis_takes_urgent_work_first_with_the_shipped_options() -> None:
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        pytest.skip("needs Redis (CELERY_BROKER_URL=redis://...), as CI sets")
    options = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    assert options["priority_steps"] == PRIORITY_STEPS
    assert options["queue_order_strategy"] == "priority"
    prefix = f"prio-{uuid.uuid4().hex[:6]}-"
    app = app_for(url, options)
    assert_urgent_first(taken_order(app, [prefix + name for name in Queues.ALL]))


def test_the_shipped_local_settings_order_the_file_broker_s_queues() -> None:
    from config.settings import local

    if local.CELERY_BROKER_URL != "filesystem://":
        pytest.skip("CELERY_BROKER_URL is set: the local settings use that broker")
    assert local.CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] == "priority"
    assert local.CELERY_TASK_DEFAULT_PRIORITY == Priority.NORMAL
