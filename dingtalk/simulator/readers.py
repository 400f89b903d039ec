"""Simulated people reading work notices.

Read times are a pure function of (seed, task id, userid): a log-normal delay after delivery
or, for a configurable share of people, never. Nothing is scheduled; ``getsendresult`` and
the inbox views evaluate the function against the simulated clock, so read lists fill up as
simulated time passes and a million recipients cost nothing until someone looks.
"""

from __future__ import annotations

import hashlib
import math
from statistics import NormalDist

from dingtalk.simulator.config import ReaderConfig

_STANDARD_NORMAL = NormalDist()


def uniform(seed: int, *parts: object) -> tuple[float, float, float]:
    """Three independent uniforms in (0, 1) derived from a hash of the parts."""
    digest = hashlib.blake2b(":".join(map(str, (seed, *parts))).encode(), digest_size=24).digest()
    first, second, third = (
        (int.from_bytes(digest[i : i + 8], "big") + 0.5) / 2**64 for i in (0, 8, 16)
    )
    return first, second, third


def read_delay(config: ReaderConfig, seed: int, task_id: int, userid: str) -> float | None:
    """Seconds between delivery and reading, or None if this person never reads it."""
    never, u, _ = uniform(seed, "read", task_id, userid)
    if never < config.never_read_share:
        return None
    return config.median_s * math.exp(config.sigma * _STANDARD_NORMAL.inv_cdf(u))


def fails(share: float, seed: int, task_id: int, userid: str) -> bool:
    if share <= 0:
        return False
    return uniform(seed, "fail", task_id, userid)[0] < share
