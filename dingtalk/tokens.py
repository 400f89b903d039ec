"""Access-token cache interface and an in-memory implementation.

The client only needs ``get``/``set``/``delete``; the parameters are positional-only so that
Django's cache object (``cache.set(key, value, timeout)``) satisfies the protocol as is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class TokenCache(Protocol):
    def get(self, key: str, /) -> str | None: ...

    def set(self, key: str, value: str, ttl: float, /) -> None: ...

    def delete(self, key: str, /) -> None: ...


class InMemoryTokenCache:
    """Process-local cache with expiry measured on an injectable clock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, /) -> str | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            value, expires_at = item
            if self._clock() >= expires_at:
                del self._items[key]
                return None
            return value

    def set(self, key: str, value: str, ttl: float, /) -> None:
        with self._lock:
            self._items[key] = (value, self._clock() + ttl)

    def delete(self, key: str, /) -> None:
        with self._lock:
            self._items.pop(key, None)
