"""A controllable clock: simulated time runs at ``scale`` times real time and can jump."""

from __future__ import annotations

import threading
import time

# DingTalk's daily and monthly windows follow China Standard Time (same as Hong Kong).
UTC_OFFSET_S = 8 * 3600


class SimClock:
    """Simulated epoch seconds. ``scale=0`` freezes time so tests move it only by ``advance``."""

    def __init__(self, start: float | None = None, scale: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._base_sim = time.time() if start is None else start
        self._base_real = time.monotonic()
        self._scale = scale

    def now(self) -> float:
        return self._base_sim + (time.monotonic() - self._base_real) * self._scale

    @property
    def scale(self) -> float:
        return self._scale

    def _rebase(self) -> None:
        self._base_sim = self.now()
        self._base_real = time.monotonic()

    def set_scale(self, scale: float) -> None:
        if scale < 0:
            raise ValueError("time scale must be >= 0")
        with self._lock:
            self._rebase()
            self._scale = scale

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._rebase()
            self._base_sim += seconds
            return self._base_sim

    def set(self, timestamp: float) -> None:
        with self._lock:
            self._base_sim = timestamp
            self._base_real = time.monotonic()


def day_key(timestamp: float) -> int:
    return int((timestamp + UTC_OFFSET_S) // 86400)


def month_key(timestamp: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(timestamp + UTC_OFFSET_S))
