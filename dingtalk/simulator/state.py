"""What the simulator keeps: per-app state, sent tasks, recorded requests, counters.

:class:`SimulatorState` holds all of it behind one re-entrant lock, so tests may inspect
and change it directly while a server thread serves the client. It also carries the plain
settings operations (clock, limits, faults, readers, reset) and the counters; everything
that acts on requests lives in the modules above it and takes a ``SimulatorState``.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from dingtalk.simulator.clock import SimClock, day_key, month_key
from dingtalk.simulator.config import AppConfig, Faults, Limits, SimulatorConfig
from dingtalk.simulator.directory import Directory


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, Any]
    remote_ip: str
    at: float
    api: str

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body.decode("utf-8", "replace")
        data["params"] = {
            k: {kk: vv for kk, vv in v.items() if kk != "data"} if isinstance(v, dict) else v
            for k, v in self.params.items()
            if not isinstance(v, bytes)
        }
        return data


@dataclass(slots=True)
class Task:
    task_id: int
    app_key: str
    created_at: float
    msg: dict[str, Any]
    title: str
    userid_list: list[str]
    dept_id_list: list[int]
    to_all_user: bool
    delivered: list[str] = field(default_factory=list)
    _position: dict[str, int] | None = None
    failed: list[str] = field(default_factory=list)
    forbidden: list[tuple[str, int, int]] = field(default_factory=list)  # userid, code, count
    overflow_forbidden: int = 0  # people past the per-call reach, reported but not listed
    invalid_userids: list[str] = field(default_factory=list)
    invalid_dept_ids: list[int] = field(default_factory=list)
    lazy_depts: list[int] | None = None  # delivered to everyone below these departments
    lazy_count: int = 0
    recalled_at: float | None = None
    status_bar: dict[str, str] | None = None
    reads: dict[str, float] = field(default_factory=dict)
    # Service Window mass sends (dingtalk.simulator.service_window): channel "service_window",
    # the caller's idempotency uuid, and the send-records status (0..4).
    channel: str = "work"
    uuid: str | None = None
    record_status: int | None = None

    @property
    def position(self) -> dict[str, int]:
        """Delivery order of each listed recipient (built on first use, off the send path)."""
        if self._position is None or len(self._position) != len(self.delivered):
            self._position = {userid: i for i, userid in enumerate(self.delivered)}
        return self._position

    @property
    def total_recipients(self) -> int:
        return (
            len(self.delivered)
            + len(self.failed)
            + len(self.forbidden)
            + self.overflow_forbidden
            + self.lazy_count
        )


class AppState:
    """Everything the simulator keeps for one DingTalk app (one organisation)."""

    def __init__(self, config: AppConfig, directory: Directory) -> None:
        self.config = config
        self.directory = directory
        self.token: str | None = None
        self.token_expires_at = 0.0
        self.tasks: dict[int, Task] = {}
        # userid -> task ids; filled lazily from ``unindexed`` so sends stay O(1) per task.
        self._inbox: dict[str, list[int]] = {}
        self.unindexed: list[Task] = []
        self.lazy_tasks: list[int] = []
        self.media: dict[str, dict[str, Any]] = {}
        self.qps_second = -1
        self.qps_counts: dict[str, int] = {}
        self.day = -1
        self.daily_counts: dict[str, int] = {}
        self.seen_content: set[tuple[str, str]] = set()
        self.to_all_today = 0
        self.minute_buckets: deque[list[int]] = deque()  # [second, recipients]
        self.minute_total = 0
        self.month = ""
        self.month_calls = 0
        # Service Window: followers (userid -> name, followed at), uuids seen (-> task id),
        # pushes of follow events that failed (fetched by get_call_back_failed_result).
        self.followers: dict[str, tuple[str, float]] = {}
        self.sw_uuids: dict[str, int] = {}
        self.failed_pushes: list[dict[str, Any]] = []

    @property
    def inbox(self) -> dict[str, list[int]]:
        if self.unindexed:
            inbox = self._inbox
            for task in self.unindexed:
                for userid in task.delivered:
                    box = inbox.get(userid)
                    if box is None:
                        inbox[userid] = [task.task_id]
                    else:
                        box.append(task.task_id)
            self.unindexed = []
        return self._inbox

    def roll_day(self, now: float) -> None:
        day = day_key(now)
        if day != self.day:
            self.day = day
            self.daily_counts = {}
            self.seen_content = set()
            self.to_all_today = 0

    def minute_usage(self, now: float) -> int:
        second = int(now)
        buckets = self.minute_buckets
        while buckets and buckets[0][0] <= second - 60:
            self.minute_total -= buckets.popleft()[1]
        return self.minute_total

    def minute_add(self, now: float, count: int) -> None:
        second = int(now)
        if self.minute_buckets and self.minute_buckets[-1][0] == second:
            self.minute_buckets[-1][1] += count
        else:
            self.minute_buckets.append([second, count])
        self.minute_total += count


@dataclass
class Injected:
    """A deterministic fault waiting for the next ``times`` calls of ``api``."""

    api: str  # API name or "*"
    kind: str  # a FaultKind
    errcode: int = -1
    sub_code: str | None = None
    times: int = 1


class SimulatorState:
    """The whole simulator's state (every app, tokens, bans, faults, counters) and settings."""

    def __init__(
        self, config: SimulatorConfig | None = None, clock: SimClock | None = None
    ) -> None:
        self.config = config or SimulatorConfig()
        self.clock = clock or SimClock(self.config.start_time, self.config.time_scale)
        self.lock = threading.RLock()
        self._build_state()

    def _build_state(self) -> None:
        self.apps: dict[str, AppState] = {}
        self.by_agent: dict[int, AppState] = {}
        for app in self.config.apps:
            directory = Directory(
                app.code, self.config.directory_size, self.config.directory_seed, app.name
            )
            if self.config.directory_file:
                directory.load_seed_file(self.config.directory_file)
            state = AppState(app, directory)
            for i in range(1, self.config.followers_size + 1):
                userid = f"fan-{app.code.lower()}-{i:04d}"
                state.followers[userid] = (f"Follower {i} 關注者{i}", 0.0)
            self.apps[app.app_key] = state
            self.by_agent[app.agent_id] = state
        # token -> (its app, when it expires); revoked tokens -> the errcode they now get.
        self.tokens: dict[str, tuple[AppState, float]] = {}
        self.revoked_tokens: dict[str, int] = {}
        self._task_ids = itertools.count(256_271_667_526)
        self._request_ids = itertools.count(1)
        self.fault_random = random.Random(self.config.seed)  # noqa: S311 - reproducible faults, not crypto
        # ip -> (one-second buckets [second, calls], running total) of its sliding window.
        self.ip_windows: dict[str, tuple[deque[list[int]], int]] = {}
        # The Observatory's warning summary as recorded, per language ("en", "tc"): the portal
        # reads it here unless a real feed address is configured. Empty: nothing in force.
        self.hko_feed: dict[str, dict[str, Any]] = {"en": {}, "tc": {}}
        self.ip_banned_until: dict[str, float] = {}
        self.injected: list[Injected] = []
        self.recorded: deque[RecordedRequest] = deque(maxlen=self.config.request_log_size)
        self.calls: Counter[str] = Counter()
        self.errcodes: Counter[int] = Counter()
        self.forbidden: Counter[int] = Counter()
        self.deliveries = 0
        self.invalid_recipients = 0
        self.ip_bans = 0
        self.events: list[dict[str, Any]] = []

    def next_task_id(self) -> int:
        return next(self._task_ids)

    def next_request_id(self) -> str:
        return f"sim{next(self._request_ids):09x}"

    # -- lookups ------------------------------------------------------------------------------

    @property
    def limits(self) -> Limits:
        return self.config.limits

    @property
    def faults(self) -> Faults:
        return self.config.faults

    def app(self, key: str | int | None = None) -> AppState:
        """An app by app_key or agent_id; the first app when ``key`` is None."""
        with self.lock:
            if key is None:
                return next(iter(self.apps.values()))
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                state = self.by_agent.get(int(key))
                if state is not None:
                    return state
            if key in self.apps:
                return self.apps[str(key)]
            raise KeyError(f"unknown app {key!r}")

    def task(self, task_id: int) -> Task:
        with self.lock:
            for state in self.apps.values():
                if task_id in state.tasks:
                    return state.tasks[task_id]
            raise KeyError(f"unknown task {task_id}")

    def requests(self, limit: int | None = None, api: str | None = None) -> list[RecordedRequest]:
        with self.lock:
            items = [r for r in self.recorded if api is None or r.api == api]
            return items if limit is None else items[-limit:]

    def counters(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock.now()
            return {
                "calls": dict(self.calls),
                "errcodes": {str(k): v for k, v in self.errcodes.items()},
                "throttled_90018": self.errcodes[90018],
                "forbidden": {str(k): v for k, v in self.forbidden.items()},
                "forbidden_total": sum(self.forbidden.values()),
                "deliveries": self.deliveries,
                "invalid_recipients": self.invalid_recipients,
                "ip_bans": self.ip_bans,
                "tasks": sum(len(s.tasks) for s in self.apps.values()),
                "quota": {
                    key: {
                        "edition": s.config.edition,
                        "used": s.month_calls if s.month == month_key(now) else 0,
                        "limit": (self.limits.get("monthly_quotas") or {}).get(s.config.edition),
                    }
                    for key, s in self.apps.items()
                },
                "now": now,
                "time_scale": self.clock.scale,
            }

    # -- settings -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget tasks, tokens, counters, bans and directory changes; keep the config."""
        with self.lock:
            self._build_state()

    def advance(self, seconds: float) -> float:
        return self.clock.advance(seconds)

    def set_time_scale(self, scale: float) -> None:
        self.clock.set_scale(scale)

    def set_limits(self, **fields: Any) -> Limits:
        with self.lock:
            for name, value in fields.items():
                if not hasattr(self.config.limits, name):
                    raise ValueError(f"unknown limit {name!r}")
                setattr(self.config.limits, name, value)
            return self.config.limits

    def set_faults(self, **fields: Any) -> Faults:
        with self.lock:
            for name, value in fields.items():
                if not hasattr(self.config.faults, name):
                    raise ValueError(f"unknown fault {name!r}")
                setattr(self.config.faults, name, value)
            return self.config.faults

    def set_readers(self, **fields: Any) -> None:
        with self.lock:
            for name, value in fields.items():
                if not hasattr(self.config.readers, name):
                    raise ValueError(f"unknown reader setting {name!r}")
                setattr(self.config.readers, name, value)
