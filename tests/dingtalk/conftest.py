from __future__ import annotations

from collections.abc import Iterator

import pytest

from dingtalk.client import DingTalkClient
from dingtalk.simulator.testing import RunningSimulator, running_simulator


@pytest.fixture
def dt() -> Iterator[RunningSimulator]:
    """A simulator with a frozen clock: simulated time moves only with ``dt.sim.advance``."""
    with running_simulator(directory_size=300, time_scale=0) as running:
        yield running


@pytest.fixture
def client(dt: RunningSimulator) -> Iterator[DingTalkClient]:
    with DingTalkClient(
        dt.app_key,
        dt.app_secret,
        dt.agent_id,
        base_url=dt.base_url,
        clock=dt.sim.clock.now,
        timeout=(1.0, 2.0),
    ) as c:
        yield c
