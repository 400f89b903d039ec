"""The embedded default's Celery broker: kombu's file-system transport, message files made whole.

kombu's own ``_put`` creates the message file under its final name and then writes into it,
while a consumer's ``_get`` moves any file with that name away and reads it at once (its lock is
advisory and the reader never takes it). A worker busy with a burst of messages can thus read a
half-written file, fail to decode it, and lose the message. Here each message is written to a
hidden temporary file in the same folder and renamed into place, which is atomic: a consumer
only ever sees whole messages.

Priorities mean what they mean on Redis (config.settings.celery.Priority): a lower number
goes first. kombu's file-system transport ignores them and takes files in name order, so the
message's priority leads its file name. With ``queue_order_strategy`` "priority" a worker asks
its queues in the order it lists them, each time from the first (kombu's own cycle is
round-robin, which gives a pile of bulk work every other turn before urgent work).

Used by ``make run`` when no ``CELERY_BROKER_URL`` is set (``config.settings.local``); the
production broker is Redis.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from queue import Empty
from time import monotonic_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps
from kombu.utils.scheduling import FairCycle


class OrderedCycle(FairCycle):
    """Ask the queues in their order every time, taking from the first that has a message."""

    def get(self, callback: Any, **kwargs: Any) -> Any:
        for resource in list(self.resources):
            try:
                return self.fun(resource, callback, **kwargs)
            except self.predicate:
                continue
        raise self.predicate()


class Channel(filesystem.Channel):
    def _reset_cycle(self) -> None:
        strategy = self.transport_options.get("queue_order_strategy", "round_robin")
        if strategy != "priority":
            super()._reset_cycle()
            return
        self._cycle = OrderedCycle(self._get_and_deliver, self._active_queues, Empty)

    # The signature of kombu's filesystem.Channel._put, which its own base names differently.
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        """Put ``payload`` onto ``queue``: written under a name no consumer reads, then renamed."""
        folder = self.data_folder_out
        # kombu's consumer takes a queue's files in name order: the priority first.
        priority = self._get_message_priority(payload, reverse=False)
        name = f"{priority}_{monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        # A leading dot: kombu's consumers take only files named "<anything>.<queue>.msg".
        temporary = os.path.join(folder, f".{uuid.uuid4().hex}.part")
        try:
            with open(temporary, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(temporary, os.path.join(folder, name))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
