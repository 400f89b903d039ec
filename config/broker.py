"""The embedded default's Celery broker: kombu's file-system transport, message files made whole.

kombu's own ``_put`` creates the message file under its final name and then writes into it,
while a consumer's ``_get`` moves any file with that name away and reads it at once (its lock is
advisory and the reader never takes it). A worker busy with a burst of messages can thus read a
half-written file, fail to decode it, and lose the message. Here each message is written to a
hidden temporary file in the same folder and renamed into place, which is atomic: a consumer
only ever sees whole messages.

Used by ``make run`` when no ``CELERY_BROKER_URL`` is set (``config.settings.local``); the
production broker is Redis.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    # The signature of kombu's filesystem.Channel._put, which its own base names differently.
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        """Put ``payload`` onto ``queue``: written under a name no consumer reads, then renamed."""
        folder = self.data_folder_out
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
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
