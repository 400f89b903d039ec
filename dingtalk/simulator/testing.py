"""Test helper: a real simulator HTTP server on a free 127.0.0.1 port in a background thread.

    with running_simulator(directory_size=200, time_scale=0) as dt:
        client = DingTalkClient(dt.app_key, dt.app_secret, dt.agent_id, base_url=dt.base_url,
                                clock=dt.sim.clock.now)
        ...
        dt.sim.advance(300)          # move simulated time
        dt.sim.inbox("hko0000001")   # inspect

Keyword arguments are :class:`SimulatorConfig` fields; ``limits`` also accepts ``False`` /
``"off"`` or a dict, ``faults`` and ``readers`` accept dicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dingtalk.simulator.config import AppConfig, SimulatorConfig
from dingtalk.simulator.server import ServerThread
from dingtalk.simulator.simulator import Simulator


@dataclass
class RunningSimulator:
    base_url: str
    sim: Simulator
    app_key: str
    app_secret: str
    agent_id: int

    @property
    def apps(self) -> list[AppConfig]:
        return [state.config for state in self.sim.apps.values()]

    def app(self, key: str | int) -> AppConfig:
        return self.sim.app(key).config


@contextmanager
def running_simulator(**config: Any) -> Iterator[RunningSimulator]:
    sim = Simulator(SimulatorConfig.build(**config))
    server = ServerThread(sim).start()
    first = sim.app().config
    try:
        yield RunningSimulator(
            server.base_url, sim, first.app_key, first.app_secret, first.agent_id
        )
    finally:
        server.stop()
