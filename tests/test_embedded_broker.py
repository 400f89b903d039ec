"""The embedded default's file-system broker hands consumers whole messages only."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from queue import Empty

from kombu import Connection

TRANSPORT = "config.broker:Transport"


def _channel(folder: str, transport: str):
    connection = Connection(
        "filesystem://",
        transport=transport,
        transport_options={
            "data_folder_in": folder,
            "data_folder_out": folder,
            "store_processed": False,
        },
    )
    return connection, connection.default_channel


def _publish(folder: str, transport: str, count: int) -> None:
    body = "x" * 2_000_000  # large enough that writing one takes a while
    connection, channel = _channel(folder, transport)
    with connection:
        for n in range(count):
            channel._put("portal", {"n": n, "body": body})


def exchange_messages(folder: str, transport: str, count: int = 60) -> tuple[list[int], list[str]]:
    """Another process publishes large messages while this one consumes them as fast as it can
    (a process, not a thread: the GIL would keep the two from overlapping)."""
    got: list[int] = []
    errors: list[str] = []
    publisher = multiprocessing.get_context("spawn").Process(
        target=_publish, args=(folder, transport, count)
    )
    connection, channel = _channel(folder, transport)
    publisher.start()
    deadline = time.monotonic() + 60
    with connection:
        while len(got) + len(errors) < count and time.monotonic() < deadline:
            try:
                got.append(int(channel._get("portal")["n"]))
            except Empty:
                continue
            except ValueError as exc:  # a half-written file does not decode
                errors.append(type(exc).__name__)
    publisher.join(30)
    return got, errors


def test_a_consumer_racing_a_publisher_gets_every_message_whole(tmp_path) -> None:
    got, errors = exchange_messages(str(tmp_path), TRANSPORT)
    assert errors == []
    assert sorted(got) == list(range(60))
    assert not list(tmp_path.iterdir())  # no temporary file left behind


def test_make_runs_settings_use_it_when_no_broker_is_set() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import config.settings.local as s; print(s.CELERY_BROKER_URL, s.CELERY_BROKER_TRANSPORT)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert shown.stdout.split() == ["filesystem://", TRANSPORT]
