"""The simulator core: DingTalk's oapi endpoints with their limits, as one plain class.

:meth:`Simulator.handle` takes one HTTP request (method, path, query, headers, body) and
returns a :class:`Response`; the WSGI app, the asyncio server and the test helper are thin
shells around it. All state sits behind one re-entrant lock so tests may inspect and control
the core directly while a server thread serves the client.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import random
import secrets
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

from dingtalk.messages import MEDIA_TYPES, MSG_TYPES, summary
from dingtalk.simulator.clock import SimClock, day_key, month_key
from dingtalk.simulator.config import (
    EDITION_QUOTAS,
    AppConfig,
    Faults,
    Limits,
    SimulatorConfig,
)
from dingtalk.simulator.directory import ROOT_DEPT_ID, Directory
from dingtalk.simulator.readers import fails, read_delay

logger = logging.getLogger("dingtalk.simulator")

JSON_HEADERS = [("Content-Type", "application/json;charset=utf-8")]
HTML_HEADERS = [("Content-Type", "text/html;charset=utf-8")]

# Forbidden-list reason codes (dingtalk-api.md §4.2).
CODE_APP_PER_MINUTE = 143103
CODE_DAILY_CAP = 143105
CODE_DUPLICATE = 143106
# The reference does not say what a fourth to_all_user send of the day does; the simulator
# accepts it (limits are silent) and reports everyone as OAPI self-protection.
CODE_TO_ALL_DAILY = 1430003

# A send to more candidates than this with no per-recipient limit active is stored as a
# department list instead of one entry per recipient.
LAZY_RECIPIENT_THRESHOLD = 20_000

IP_BAN_HTML = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>访问被拒绝</title></head>"
    "<body><h1>访问被拒绝 Access denied</h1><p>您的IP访问频率过高, 请5分钟后再试。</p>"
    "<p>Too many requests from your IP address; retry in 5 minutes.</p></body></html>"
).encode()


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    delay: float = 0.0  # real seconds to hold the answer (latency and timeout faults)


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
        data["params"] = {k: v for k, v in self.params.items() if not isinstance(v, bytes)}
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
    api: str  # API name or "*"
    kind: str  # errcode | http_500 | timeout | html_ban | status_1111 | non_json
    errcode: int = -1
    sub_code: str | None = None
    times: int = 1


class ApiError(Exception):
    """Raised inside handlers; turned into DingTalk's errcode body."""

    def __init__(self, errcode: int, errmsg: str, sub_code: str | None = None) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg
        self.sub_code = sub_code


Handler = Callable[[AppState, dict[str, Any], float], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Route:
    api: str
    metered: bool
    permission: str | None
    method: str = "POST"


ROUTES: dict[str, Route] = {
    "/gettoken": Route("gettoken", False, None, "GET"),
    "/topapi/message/corpconversation/asyncsend_v2": Route("asyncsend_v2", True, "qyapi_base"),
    "/topapi/message/corpconversation/getsendprogress": Route(
        "getsendprogress", True, "qyapi_base"
    ),
    "/topapi/message/corpconversation/getsendresult": Route("getsendresult", True, "qyapi_base"),
    "/topapi/message/corpconversation/recall": Route("recall", True, "qyapi_base"),
    "/topapi/message/corpconversation/status_bar/update": Route(
        "status_bar_update", True, "qyapi_base"
    ),
    "/media/upload": Route("media_upload", True, "qyapi_base"),
    "/topapi/v2/department/listsub": Route(
        "department_listsub", False, "qyapi_get_department_list"
    ),
    "/topapi/v2/department/listsubid": Route("department_listsubid", False, None),
    "/topapi/user/listid": Route("user_listid", False, "qyapi_get_member"),
    "/topapi/v2/user/list": Route("user_list", False, "qyapi_get_department_member"),
    "/topapi/user/listsimple": Route("user_listsimple", False, "qyapi_get_department_member"),
    "/topapi/v2/user/get": Route("user_get", False, "qyapi_get_member"),
}


def per_call_reach(candidates: int, limits: Limits) -> tuple[int, int, int]:
    """How many of a send's candidate recipients one call may reach.

    The reference only says "one call reaches at most 5,000 people (internal app)". The
    simulator reaches the first 5,000 and reports every further person as forbidden with the
    per-minute code, never as delivered. Returns (reached, overflow, overflow code).
    """
    cap = limits.get("max_reach_per_call")
    if cap is None or candidates <= cap:
        return candidates, 0, CODE_APP_PER_MINUTE
    return cap, candidates - cap, CODE_APP_PER_MINUTE


def _split_ids(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value)
    parts = text.split(",")
    if " " in text or "" in parts:
        return [part.strip() for part in parts if part.strip()]
    return parts


def _unquote_form(value: str) -> str:
    value = value.replace("+", " ")
    if "%" not in value:
        return value
    # userid_list arrives as "a%2Cb%2Cc"; replacing the comma escape first keeps the
    # general (slow) unquote off the hot path.
    value = value.replace("%2C", ",")
    return unquote(value) if "%" in value else value


def parse_form(body: bytes | str) -> dict[str, str]:
    """application/x-www-form-urlencoded text (a body or a query string) to a dict."""
    result: dict[str, str] = {}
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        result[_unquote_form(name)] = _unquote_form(value)
    return result


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1")


def _as_int(params: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = params.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        raise ApiError(40035, f"缺少参数 {name} (missing parameter {name})")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(40035, f"不合法的参数 {name} (illegal parameter {name})") from None


def parse_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    """Minimal multipart/form-data parser: text fields as str, file parts as dicts."""
    boundary = ""
    for piece in content_type.split(";"):
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ApiError(43008, "需要multipart请求 (multipart boundary missing)")
    fields: dict[str, Any] = {}
    for part in body.split(b"--" + boundary.encode()):
        if part in (b"", b"--", b"--\r\n", b"\r\n") or part.startswith(b"--"):
            continue
        head, _, content = part.strip(b"\r\n").partition(b"\r\n\r\n")
        name = filename = ""
        part_type = "application/octet-stream"
        for line in head.decode("utf-8", "replace").split("\r\n"):
            header, _, value = line.partition(":")
            if header.strip().lower() == "content-disposition":
                for item in value.split(";"):
                    k, _, v = item.strip().partition("=")
                    if k == "name":
                        name = v.strip('"')
                    elif k == "filename":
                        filename = v.strip('"')
            elif header.strip().lower() == "content-type":
                part_type = value.strip()
        if not name:
            continue
        if filename:
            fields[name] = {"filename": filename, "content_type": part_type, "size": len(content)}
        else:
            fields[name] = content.decode("utf-8", "replace")
    return fields


class Simulator:
    """DingTalk as documented, limits and silent drops included. See the package docstring."""

    def __init__(
        self, config: SimulatorConfig | None = None, clock: SimClock | None = None
    ) -> None:
        self.config = config or SimulatorConfig()
        self.clock = clock or SimClock(self.config.start_time, self.config.time_scale)
        self.lock = threading.RLock()
        self._build_state()
        self._handlers: dict[str, Handler] = {
            "asyncsend_v2": self._asyncsend_v2,
            "getsendprogress": self._getsendprogress,
            "getsendresult": self._getsendresult,
            "recall": self._recall,
            "status_bar_update": self._status_bar_update,
            "media_upload": self._media_upload,
            "department_listsub": self._department_listsub,
            "department_listsubid": self._department_listsubid,
            "user_listid": self._user_listid,
            "user_list": self._user_list,
            "user_listsimple": self._user_listsimple,
            "user_get": self._user_get,
        }

    def _build_state(self) -> None:
        self.apps: dict[str, AppState] = {}
        self._by_agent: dict[int, AppState] = {}
        for app in self.config.apps:
            directory = Directory(
                app.code, self.config.directory_size, self.config.directory_seed, app.name
            )
            if self.config.directory_file:
                directory.load_seed_file(self.config.directory_file)
            state = AppState(app, directory)
            self.apps[app.app_key] = state
            self._by_agent[app.agent_id] = state
        self._tokens: dict[str, tuple[AppState, float]] = {}
        self._revoked: dict[str, int] = {}
        self._task_ids = itertools.count(256_271_667_526)
        self._request_ids = itertools.count(1)
        self._random = random.Random(self.config.seed)  # noqa: S311 - reproducible faults, not crypto
        self._ip_window: dict[str, tuple[deque[list[int]], int]] = {}
        self._ip_banned_until: dict[str, float] = {}
        self._injected: list[Injected] = []
        self.recorded: deque[RecordedRequest] = deque(maxlen=self.config.request_log_size)
        self.calls: Counter[str] = Counter()
        self.errcodes: Counter[int] = Counter()
        self.forbidden: Counter[int] = Counter()
        self.deliveries = 0
        self.invalid_recipients = 0
        self.ip_bans = 0
        self.events: list[dict[str, Any]] = []

    # -- control (Python API; the /_sim/ endpoints call these) ----------------------------

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
                state = self._by_agent.get(int(key))
                if state is not None:
                    return state
            if key in self.apps:
                return self.apps[str(key)]
            raise KeyError(f"unknown app {key!r}")

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

    def inject(
        self,
        api: str = "*",
        kind: str = "errcode",
        *,
        errcode: int = -1,
        sub_code: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``api`` with a fault (deterministic injection).

        Kinds: ``errcode`` (with ``errcode``/``sub_code``), ``http_500``, ``timeout``
        (processed but held for ``faults.timeout_hold_s``), ``html_ban``, ``status_1111``,
        ``non_json``.
        """
        if kind not in ("errcode", "http_500", "timeout", "html_ban", "status_1111", "non_json"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self.lock:
            self._injected.append(Injected(api, kind, errcode, sub_code, times))

    def revoke_tokens(self, app_key: str | None = None, errcode: int = 40014) -> int:
        """Invalidate current tokens; the next call with one gets ``errcode`` (40001/40014/42001/88)."""
        with self.lock:
            count = 0
            for state in self.apps.values():
                if app_key is not None and state.config.app_key != app_key:
                    continue
                if state.token is not None:
                    self._revoked[state.token] = errcode
                    state.token = None
                    count += 1
            return count

    def ban_ip(self, ip: str, seconds: float | None = None) -> None:
        with self.lock:
            self._ip_banned_until[ip] = self.clock.now() + (seconds or self.limits.ip_ban_s)
            self.ip_bans += 1

    def unban_ip(self, ip: str) -> None:
        with self.lock:
            self._ip_banned_until.pop(ip, None)
            self._ip_window.pop(ip, None)

    def mark_read(self, task_id: int, userid: str, at: float | None = None) -> None:
        """Record that a simulated person opened a notice (at ``at``, default now)."""
        with self.lock:
            task = self._task(task_id)
            if userid not in task.position and not self._lazy_member(task, userid):
                raise KeyError(f"{userid} did not receive task {task_id}")
            moment = self.clock.now() if at is None else at
            task.reads[userid] = min(moment, task.reads.get(userid, moment))

    def _task(self, task_id: int) -> Task:
        for state in self.apps.values():
            if task_id in state.tasks:
                return state.tasks[task_id]
        raise KeyError(f"unknown task {task_id}")

    def task(self, task_id: int) -> Task:
        with self.lock:
            return self._task(task_id)

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

    def requests(self, limit: int | None = None, api: str | None = None) -> list[RecordedRequest]:
        with self.lock:
            items = [r for r in self.recorded if api is None or r.api == api]
            return items if limit is None else items[-limit:]

    def read_at(self, task: Task, userid: str) -> float | None:
        """When ``userid`` reads ``task`` (simulated epoch seconds), or None for never."""
        explicit = task.reads.get(userid)
        readers = self.config.readers
        automatic: float | None = None
        if readers.enabled and task.recalled_at is None:
            delay = read_delay(readers, self.config.seed, task.task_id, userid)
            if delay is not None:
                automatic = self._delivered_at(task, userid) + delay
        if explicit is None:
            return automatic
        return explicit if automatic is None else min(explicit, automatic)

    def _delivered_at(self, task: Task, userid: str) -> float:
        position = task.position.get(userid, 0)
        return task.created_at + position / self.config.delivery_rate_per_s

    def _lazy_member(self, task: Task, userid: str) -> bool:
        if task.lazy_depts is None:
            return False
        user = self.apps[task.app_key].directory.get_user(userid)
        if user is None:
            return False
        depts = {
            d for root in task.lazy_depts for d in self.apps[task.app_key].directory.subtree(root)
        }
        return any(d in depts for d in user.dept_id_list)

    def inbox(self, userid: str, app_key: str | None = None) -> list[dict[str, Any]]:
        """What one person's phone shows, newest first."""
        with self.lock:
            state = self.app(app_key)
            now = self.clock.now()
            task_ids = list(state.inbox.get(userid, []))
            task_ids += [t for t in state.lazy_tasks if self._lazy_member(state.tasks[t], userid)]
            entries = []
            for task_id in sorted(set(task_ids), reverse=True):
                task = state.tasks[task_id]
                delivered_at = self._delivered_at(task, userid)
                if delivered_at > now:
                    continue
                read = self.read_at(task, userid)
                entries.append(
                    {
                        "task_id": task_id,
                        "msg": task.msg,
                        "title": task.title,
                        "received_at": delivered_at,
                        "read_at": read if read is not None and read <= now else None,
                        "recalled": task.recalled_at is not None,
                        "status_bar": task.status_bar,
                    }
                )
            return entries

    def directory_event(
        self,
        app_key: str,
        event_type: str,
        userid: str | None = None,
        dept_id: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Change the directory and push the event to the app's callback URL (blocking).

        Must not be called from the server thread: the receiver may call back into it.
        """
        from dingtalk.simulator.events import directory_event

        return directory_event(self, app_key, event_type, userid, dept_id, **fields)

    def check_url(self, app_key: str) -> dict[str, Any]:
        """Push the check_url handshake and verify the encrypted ``success`` reply."""
        from dingtalk.simulator.events import check_url

        return check_url(self, app_key)

    def recipients_with_messages(self, app_key: str | None = None, limit: int = 50) -> list[str]:
        with self.lock:
            state = self.app(app_key)
            return list(itertools.islice(reversed(list(state.inbox)), limit))

    # -- request entry point ------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        remote_ip: str = "127.0.0.1",
    ) -> Response:
        """Serve one HTTP request. ``headers`` keys are matched case-insensitively."""
        if path.startswith("/_sim"):
            from dingtalk.simulator.control import handle_control

            return handle_control(self, method, path, query, body, remote_ip)
        route = ROUTES.get(path.rstrip("/") or "/")
        if route is None:
            return self._json({"errcode": 404, "errmsg": f"api not found: {path}"}, status=404)
        with self.lock:
            try:
                return self._serve(route, method, path, query, headers, body, remote_ip)
            except ApiError as exc:
                return self._error_response(route, exc)
            except Exception as exc:
                # A fake must answer like DingTalk, never with a traceback; the log shows the bug.
                logger.exception("simulator error serving %s", route.api)
                return self._error_response(
                    route, ApiError(-1, f"系统繁忙 (simulator error: {type(exc).__name__})")
                )

    def _serve(
        self,
        route: Route,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        remote_ip: str,
    ) -> Response:
        now = self.clock.now()
        self.calls[route.api] += 1
        content_type = ""
        for key, value in headers.items():
            if key.lower() == "content-type":
                content_type = value
                break
        params = self._parse_params(query, body, content_type)
        if self.config.record_requests:
            self.recorded.append(
                RecordedRequest(
                    method,
                    path,
                    dict(query),
                    {k.lower(): v for k, v in headers.items()},
                    body,
                    params,
                    remote_ip,
                    now,
                    route.api,
                )
            )
        banned = self._ip_check(remote_ip, now)
        if banned is not None:
            return banned
        faulted, hold = self._faults(route.api)
        if faulted is not None:
            return faulted
        if route.method == "GET" and method != "GET" and route.api == "gettoken":
            raise ApiError(43001, "需要GET请求 (GET required)")
        if route.method == "POST" and method != "POST":
            raise ApiError(43002, "需要POST请求 (POST required)")
        if route.api == "gettoken":
            payload = self._gettoken(params, now)
        else:
            state = self._authenticate(path, query.get("access_token"), now)
            if state.config.ip_whitelist is not None and remote_ip not in state.config.ip_whitelist:
                raise ApiError(60020, f"访问ip不在白名单之中,request ip={remote_ip}")
            permissions = state.config.permissions
            if route.permission and permissions is not None and route.permission not in permissions:
                if path.startswith("/topapi/"):
                    raise ApiError(
                        88, "ding talk error[subcode=60011,submsg=没有调用该接口的权限]", "60011"
                    )
                raise ApiError(60011, "没有调用该接口的权限 (no permission)")
            self._rate_limit(state, route.api, now)
            if route.metered:
                self._meter(state, now)
            payload = self._handlers[route.api](state, params, now)
        self.errcodes[0] += 1
        response = self._json(
            {"errcode": 0, "errmsg": "ok", **payload, "request_id": self._request_id()}
        )
        response.delay = hold + self.faults.latency_s
        return response

    # -- plumbing ---------------------------------------------------------------------------------

    def _request_id(self) -> str:
        return f"sim{next(self._request_ids):09x}"

    @staticmethod
    def _json(payload: Mapping[str, Any], status: int = 200) -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return Response(status, list(JSON_HEADERS), body)

    def _error_response(self, route: Route, exc: ApiError) -> Response:
        self.errcodes[exc.errcode] += 1
        payload: dict[str, Any] = {"errcode": exc.errcode, "errmsg": exc.errmsg}
        if exc.sub_code is not None:
            payload["sub_code"] = exc.sub_code
            payload["sub_msg"] = exc.errmsg
        payload["request_id"] = self._request_id()
        response = self._json(payload)
        response.delay = self.faults.latency_s
        return response

    def _parse_params(
        self, query: Mapping[str, str], body: bytes, content_type: str
    ) -> dict[str, Any]:
        params: dict[str, Any] = {k: v for k, v in query.items() if k != "access_token"}
        if not body:
            return params
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind == "application/json":
            try:
                data = json.loads(body)
            except ValueError:
                raise ApiError(40035, "不合法的参数 (body is not valid JSON)") from None
            if not isinstance(data, dict):
                raise ApiError(40035, "不合法的参数 (JSON body must be an object)")
            params.update(data)
        elif kind == "multipart/form-data":
            params.update(parse_multipart(body, content_type))
        else:
            try:
                params.update(parse_form(body))
            except UnicodeDecodeError:
                raise ApiError(40035, "不合法的参数 (body is not UTF-8)") from None
        return params

    def _ip_check(self, ip: str, now: float) -> Response | None:
        until = self._ip_banned_until.get(ip)
        if until is not None and now < until:
            return self._ban_response()
        threshold = self.limits.get("ip_calls_per_window")
        if threshold is None:
            return None
        # Sliding window of one-second buckets: [second, calls] plus a running total.
        second = int(now)
        buckets, total = self._ip_window.get(ip) or (deque(), 0)
        horizon = second - self.limits.ip_window_s
        while buckets and buckets[0][0] <= horizon:
            total -= buckets.popleft()[1]
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += 1
        else:
            buckets.append([second, 1])
        count = total + 1
        self._ip_window[ip] = (buckets, count)
        if count > threshold:
            self._ip_banned_until[ip] = now + self.limits.ip_ban_s
            self.ip_bans += 1
            return self._ban_response()
        return None

    def _ban_response(self, style: str | None = None) -> Response:
        self.errcodes[1111] += 1
        if (style or self.limits.ip_ban_style) == "json":
            body = {"status": 1111, "wait": 5, "source": "x5", "punish": "deny"}
            return Response(200, list(JSON_HEADERS), json.dumps(body).encode())
        return Response(200, list(HTML_HEADERS), IP_BAN_HTML)

    def _faults(self, api: str) -> tuple[Response | None, float]:
        for injected in self._injected:
            if injected.api in ("*", api):
                injected.times -= 1
                if injected.times <= 0:
                    self._injected.remove(injected)
                return self._fault_response(injected.kind, injected.errcode, injected.sub_code)
        faults = self.faults
        rnd = self._random
        if faults.http_5xx_rate and rnd.random() < faults.http_5xx_rate:
            return self._fault_response("http_500", 0, None)
        if faults.busy_rate and rnd.random() < faults.busy_rate:
            return self._fault_response("errcode", -1, None)
        if faults.global_throttle_rate and rnd.random() < faults.global_throttle_rate:
            return self._fault_response("errcode", 90002, None)
        if faults.error_rate and rnd.random() < faults.error_rate:
            return self._fault_response("errcode", rnd.choice(faults.error_codes), None)
        if faults.timeout_rate and rnd.random() < faults.timeout_rate:
            return None, faults.timeout_hold_s
        return None, 0.0

    def _fault_response(
        self, kind: str, errcode: int, sub_code: str | None
    ) -> tuple[Response | None, float]:
        if kind == "timeout":
            return None, self.faults.timeout_hold_s
        if kind == "http_500":
            self.errcodes[500] += 1
            return Response(
                500,
                [("Content-Type", "text/html")],
                b"<html><body>500 Internal Server Error</body></html>",
            ), 0.0
        if kind == "html_ban":
            return self._ban_response("html"), 0.0
        if kind == "status_1111":
            return self._ban_response("json"), 0.0
        if kind == "non_json":
            self.errcodes[502] += 1
            return Response(200, [("Content-Type", "text/plain")], b"upstream gateway hiccup"), 0.0
        messages = {
            -1: "系统繁忙",
            90002: "api调用超过全局限流",
            90018: "api调用超过应用限流",
            90020: "调用量超过月度限额",
        }
        exc = ApiError(errcode, messages.get(errcode, f"injected error {errcode}"), sub_code)
        return self._error_response(Route("injected", False, None), exc), 0.0

    def _gettoken(self, params: Mapping[str, Any], now: float) -> dict[str, Any]:
        app_key = params.get("appkey") or params.get("corpid")
        secret = params.get("appsecret") or params.get("corpsecret")
        state = self.apps.get(str(app_key))
        if state is None or not secrets.compare_digest(str(secret or ""), state.config.app_secret):
            raise ApiError(40089, "不合法的corpid或corpsecret (invalid appkey or appsecret)")
        self._rate_limit(state, "gettoken", now)
        lifetime = int(self.limits.get("token_lifetime_s"))
        # Asking again while the token is valid returns the same token and extends it (§1.1).
        if state.token is None or now >= state.token_expires_at:
            state.token = secrets.token_hex(16)
        state.token_expires_at = now + lifetime
        self._tokens[state.token] = (state, state.token_expires_at)
        return {"access_token": state.token, "expires_in": lifetime}

    def _authenticate(self, path: str, token: str | None, now: float) -> AppState:
        topapi = path.startswith("/topapi/")
        if not token:
            raise ApiError(41001, "缺少access_token参数")
        revoked = self._revoked.get(token)
        if revoked is not None or token not in self._tokens:
            code = revoked if revoked is not None else 40014
            if code == 88 or (code == 40014 and topapi):
                raise ApiError(
                    88, "ding talk error[subcode=40014,submsg=不合法的access_token]", "40014"
                )
            raise ApiError(
                code,
                {
                    40001: "获取access_token时Secret错误, 或者access_token无效",
                    42001: "access_token超时",
                }.get(code, "不合法的access_token"),
            )
        state, expires_at = self._tokens[token]
        if now >= max(expires_at, state.token_expires_at if state.token == token else 0):
            raise ApiError(42001, "access_token超时")
        return state

    def _rate_limit(self, state: AppState, api: str, now: float) -> None:
        limit = self.limits.get("per_app_api_calls_per_s")
        if limit is None:
            return
        second = int(now)
        if second != state.qps_second:
            state.qps_second = second
            state.qps_counts = {}
        count = state.qps_counts.get(api, 0) + 1
        state.qps_counts[api] = count
        if count > limit:
            raise ApiError(90018, f"当前应用调用该api超过限流,qps={limit}")

    def _meter(self, state: AppState, now: float) -> None:
        quotas = self.limits.get("monthly_quotas")
        if quotas is None:
            return
        month = month_key(now)
        if month != state.month:
            state.month = month
            state.month_calls = 0
        if state.month_calls >= quotas.get(
            state.config.edition, EDITION_QUOTAS[state.config.edition]
        ):
            raise ApiError(90020, "当前企业调用量已超过月度限额 (monthly API quota exhausted)")
        state.month_calls += 1

    def _check_agent(
        self, state: AppState, params: Mapping[str, Any], errcode: int = 40056
    ) -> None:
        agent_id = params.get("agent_id")
        try:
            matches = int(str(agent_id)) == state.config.agent_id
        except (TypeError, ValueError):
            matches = False
        if not matches:
            raise ApiError(errcode, "不合法的agentId (invalid agent_id)")

    def _owned_task(
        self, state: AppState, params: Mapping[str, Any], name: str, errcode: int
    ) -> Task:
        task_id = _as_int(params, name)
        task = state.tasks.get(task_id)
        if task is None:
            raise ApiError(errcode, f"不合法的{name} (unknown task)")
        return task

    # -- work notifications ----------------------------------------------------------------------

    def _parse_msg(self, raw: Any) -> tuple[dict[str, Any], int]:
        if isinstance(raw, dict):
            msg = raw
            size = len(json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode())
        elif isinstance(raw, str) and raw:
            try:
                msg = json.loads(raw)
            except ValueError:
                raise ApiError(40035, "不合法的参数 msg (msg is not JSON)") from None
            size = len(raw.encode())
        else:
            raise ApiError(40035, "缺少参数 msg")
        if not isinstance(msg, dict):
            raise ApiError(40035, "不合法的参数 msg")
        msgtype = msg.get("msgtype")
        if msgtype not in MSG_TYPES or not isinstance(msg.get(msgtype), dict):
            raise ApiError(40035, "不合法的参数 msg.msgtype")
        return msg, size

    def _check_media(self, state: AppState, msg: Mapping[str, Any]) -> None:
        msgtype = msg["msgtype"]
        if msgtype in ("image", "file", "voice"):
            media_id = msg[msgtype].get("media_id")
            if media_id not in state.media:
                raise ApiError(40007, "不合法的媒体文件id (unknown media_id)")

    def _asyncsend_v2(self, state: AppState, params: dict[str, Any], now: float) -> dict[str, Any]:
        self._check_agent(state, params)
        msg, size = self._parse_msg(params.get("msg"))
        max_bytes = self.limits.get("max_msg_bytes")
        if max_bytes is not None and size > max_bytes:
            raise ApiError(40035, f"不合法的参数 msg (msg is {size} bytes, limit {max_bytes})")
        self._check_media(state, msg)
        userids = _split_ids(params.get("userid_list"))
        dept_raw = _split_ids(params.get("dept_id_list"))
        to_all = _as_bool(params.get("to_all_user", False))
        max_users = self.limits.get("max_userids_per_call")
        if max_users is not None and len(userids) > max_users:
            raise ApiError(40035, f"不合法的参数 userid_list (more than {max_users} userids)")
        max_depts = self.limits.get("max_depts_per_call")
        if max_depts is not None and len(dept_raw) > max_depts:
            raise ApiError(40035, f"不合法的参数 dept_id_list (more than {max_depts} departments)")
        if not userids and not dept_raw and not to_all:
            raise ApiError(40035, "userid_list, dept_id_list, to_all_user 不能同时为空")
        task = Task(
            task_id=next(self._task_ids),
            app_key=state.config.app_key,
            created_at=now,
            msg=msg,
            title=summary(msg),
            userid_list=userids,
            dept_id_list=[],
            to_all_user=to_all,
        )
        if msg["msgtype"] == "oa" and isinstance(msg["oa"].get("status_bar"), dict):
            task.status_bar = {str(k): str(v) for k, v in msg["oa"]["status_bar"].items()}
        directory = state.directory
        depts: list[int] = []
        for raw in dept_raw:
            if raw.isdigit() and int(raw) in directory.departments:
                depts.append(int(raw))
            else:
                task.invalid_dept_ids.append(int(raw) if raw.lstrip("-").isdigit() else -1)
        task.dept_id_list = depts
        if to_all:
            depts = [ROOT_DEPT_ID]
        unique = list(dict.fromkeys(userids))
        explicit, task.invalid_userids = directory.partition(unique)
        seen = set(unique) if depts else set()
        self.invalid_recipients += len(task.invalid_userids)
        state.roll_day(now)
        to_all_cap = self.limits.get("to_all_user_per_day")
        if to_all:
            state.to_all_today += 1
        silenced = to_all and to_all_cap is not None and state.to_all_today > to_all_cap
        self._deliver(state, task, explicit, seen, depts, now, silenced)
        state.tasks[task.task_id] = task
        return {"task_id": task.task_id}

    def _per_recipient_limits(self) -> bool:
        limits = self.limits
        return bool(
            limits.get("same_content_once_per_day")
            or limits.get("per_user_daily_cap") is not None
            or limits.get("recipients_per_minute") is not None
            or self.faults.failed_share > 0
        )

    def _deliver(
        self,
        state: AppState,
        task: Task,
        explicit: list[str],
        seen: set[str],
        depts: list[int],
        now: float,
        silenced: bool,
    ) -> None:
        directory = state.directory
        dept_count = 0
        if depts:
            dept_count = directory.count_members(depts)
            subtree = {d for root in depts for d in directory.subtree(root)}
            overlap = 0
            for userid in explicit:
                user = directory.get_user(userid)
                if user is not None and any(d in subtree for d in user.dept_id_list):
                    overlap += 1
            dept_count -= overlap
        candidates = len(explicit) + dept_count
        reach, overflow, overflow_code = per_call_reach(candidates, self.limits)
        if overflow:
            task.overflow_forbidden = overflow
            self.forbidden[overflow_code] += overflow
        if (
            depts
            and not silenced
            and reach > LAZY_RECIPIENT_THRESHOLD
            and not self._per_recipient_limits()
        ):
            # Too many to list and nobody can be filtered: remember the departments instead.
            self._deliver_each(state, task, explicit, now, silenced)
            task.lazy_depts = list(depts)
            task.lazy_count = dept_count
            state.lazy_tasks.append(task.task_id)
            self.deliveries += dept_count
            return
        people: Iterator[str] = itertools.chain(
            explicit, (u for u in directory.iter_recipients(depts) if u not in seen)
        )
        self._deliver_each(state, task, itertools.islice(people, reach), now, silenced)

    def _deliver_each(
        self,
        state: AppState,
        task: Task,
        people: Iterator[str] | list[str],
        now: float,
        silenced: bool,
    ) -> None:
        delivered = task.delivered
        state.unindexed.append(task)
        if silenced:
            for userid in people:
                task.forbidden.append((userid, CODE_TO_ALL_DAILY, 3))
            self.forbidden[CODE_TO_ALL_DAILY] += len(task.forbidden)
            return
        if not self._per_recipient_limits():
            delivered.extend(people)
            self.deliveries += len(delivered)
            return
        limits = self.limits
        dedupe = limits.get("same_content_once_per_day")
        cap = limits.get("per_user_daily_cap")
        per_minute = limits.get("recipients_per_minute")
        content_key = hashlib.sha1(  # noqa: S324 - a content fingerprint, not security
            json.dumps(task.msg, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
        used = state.minute_usage(now)
        failed_share = self.faults.failed_share
        daily = state.daily_counts
        for userid in people:
            if dedupe and (userid, content_key) in state.seen_content:
                task.forbidden.append((userid, CODE_DUPLICATE, 1))
                self.forbidden[CODE_DUPLICATE] += 1
                continue
            if cap is not None and daily.get(userid, 0) >= cap:
                task.forbidden.append((userid, CODE_DAILY_CAP, cap))
                self.forbidden[CODE_DAILY_CAP] += 1
                continue
            if per_minute is not None and used >= per_minute:
                task.forbidden.append((userid, CODE_APP_PER_MINUTE, per_minute))
                self.forbidden[CODE_APP_PER_MINUTE] += 1
                continue
            used += 1
            if dedupe:
                state.seen_content.add((userid, content_key))
            daily[userid] = daily.get(userid, 0) + 1
            if fails(failed_share, self.config.seed, task.task_id, userid):
                task.failed.append(userid)
                continue
            delivered.append(userid)
        if per_minute is not None:
            state.minute_add(now, used - state.minute_usage(now))
        self.deliveries += len(delivered)

    def _progress_of(self, task: Task, now: float) -> tuple[int, int]:
        total = task.total_recipients
        if total == 0:
            return 100, 2
        processed = (now - task.created_at) * self.config.delivery_rate_per_s + 1
        percent = min(100, int(processed * 100 // total))
        return percent, 2 if percent >= 100 else 1

    def _check_window(
        self, task: Task, now: float, limit_name: str, errcode: int, what: str
    ) -> None:
        window = self.limits.get(limit_name)
        if window is not None and now - task.created_at > window:
            raise ApiError(errcode, f"{what} (task is older than {int(window // 3600)} hours)")

    def _getsendprogress(
        self, state: AppState, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        self._check_agent(state, params, 40035)
        task = self._owned_task(state, params, "task_id", 40035)
        self._check_window(task, now, "progress_window_s", 40035, "不合法的task_id")
        percent, status = self._progress_of(task, now)
        return {"progress": {"progress_in_percent": percent, "status": status}}

    def _getsendresult(self, state: AppState, params: dict[str, Any], now: float) -> dict[str, Any]:
        self._check_agent(state, params, 40035)
        task = self._owned_task(state, params, "task_id", 40035)
        self._check_window(task, now, "result_window_s", 40035, "不合法的task_id")
        max_recipients = self.limits.get("result_max_recipients")
        if max_recipients is not None and task.total_recipients > max_recipients:
            raise ApiError(
                41052, f"接收人数过多, 不再返回结果 (more than {max_recipients} recipients)"
            )
        if self._progress_of(task, now)[1] != 2:
            raise ApiError(41052, "消息发送中, 暂无结果 (task still in progress)")
        read: list[str] = []
        unread: list[str] = []
        for userid in self._delivered_users(state, task):
            moment = self.read_at(task, userid)
            (read if moment is not None and moment <= now else unread).append(userid)
        return {
            "send_result": {
                "invalid_user_id_list": list(task.invalid_userids),
                "forbidden_user_id_list": [userid for userid, _, _ in task.forbidden],
                "failed_user_id_list": list(task.failed),
                "read_user_id_list": read,
                "unread_user_id_list": unread,
                "invalid_dept_id_list": list(task.invalid_dept_ids),
                "forbidden_list": [
                    {"code": str(code), "count": count, "userid": userid}
                    for userid, code, count in task.forbidden
                ],
            }
        }

    def _delivered_users(self, state: AppState, task: Task) -> Iterator[str]:
        yield from task.delivered
        if task.lazy_depts is not None:
            listed = set(task.delivered)
            for userid in state.directory.iter_recipients(task.lazy_depts):
                if userid not in listed:
                    yield userid

    def _recall(self, state: AppState, params: dict[str, Any], now: float) -> dict[str, Any]:
        self._check_agent(state, params, 400002)
        task = self._owned_task(state, params, "msg_task_id", 400002)
        self._check_window(task, now, "recall_window_s", 400002, "不合法的msg_task_id")
        if task.recalled_at is None:
            task.recalled_at = now
        return {}

    def _status_bar_update(
        self, state: AppState, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        self._check_agent(state, params, 40056)
        task = self._owned_task(state, params, "task_id", 40035)
        self._check_window(task, now, "status_bar_window_s", 40035, "不合法的task_id")
        if task.msg.get("msgtype") != "oa":
            raise ApiError(40035, "不合法的task_id (status bar needs an oa message)")
        if task.dept_id_list or task.to_all_user or len(task.userid_list) > 5:
            raise ApiError(41052, "接收人数过多 (status bar needs at most 5 userids)")
        value = params.get("status_value")
        if not value:
            raise ApiError(40035, "缺少参数 status_value")
        task.status_bar = {"status_value": str(value)}
        if params.get("status_bg"):
            task.status_bar["status_bg"] = str(params["status_bg"])
        return {}

    def _media_upload(self, state: AppState, params: dict[str, Any], now: float) -> dict[str, Any]:
        media = params.get("media")
        if not isinstance(media, dict):
            raise ApiError(
                43008, "需要multipart请求, 文件字段名为media (multipart field media required)"
            )
        media_type = str(params.get("type", ""))
        if media_type not in MEDIA_TYPES:
            raise ApiError(40004, "不合法的媒体文件类型 (invalid media type)")
        max_bytes, extensions = MEDIA_TYPES[media_type]
        filename = str(media["filename"])
        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if extension not in extensions:
            raise ApiError(40005, "不合法的文件类型 (invalid file type)")
        if not 0 < media["size"] <= max_bytes:
            raise ApiError(40006, "不合法的文件大小 (invalid file size)")
        media_id = "@lA" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")
        created = int(now * 1000)
        state.media[media_id] = {"type": media_type, "filename": filename, "size": media["size"]}
        return {"type": media_type, "media_id": media_id, "created_at": created}

    # -- directory ---------------------------------------------------------------------------------

    def _dept(self, state: AppState, params: Mapping[str, Any], default: int | None = None) -> int:
        dept_id = _as_int(params, "dept_id", default)
        if dept_id not in state.directory.departments:
            raise ApiError(60003, "部门不存在 (department not found)")
        return dept_id

    def _dept_name(self, state: AppState, dept_id: int, language: str) -> str:
        dept = state.directory.departments[dept_id]
        return dept.name if language == "en_US" or not dept.name_tc else dept.name_tc

    def _department_listsub(
        self, state: AppState, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        dept_id = self._dept(state, params, ROOT_DEPT_ID)
        language = str(params.get("language", "zh_CN"))
        return {
            "result": [
                {
                    "dept_id": child,
                    "name": self._dept_name(state, child, language),
                    "parent_id": dept_id,
                    "create_dept_group": True,
                    "auto_add_user": True,
                }
                for child in state.directory.children(dept_id)
            ]
        }

    def _department_listsubid(
        self, state: AppState, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        dept_id = self._dept(state, params)
        return {"result": {"dept_id_list": state.directory.children(dept_id)}}

    def _user_listid(self, state: AppState, params: dict[str, Any], now: float) -> dict[str, Any]:
        dept_id = self._dept(state, params)
        return {"result": {"userid_list": list(state.directory.members(dept_id))}}

    def _page(self, state: AppState, params: Mapping[str, Any]) -> tuple[list[str], int | None]:
        dept_id = self._dept(state, params)
        cursor = _as_int(params, "cursor", 0)
        size = _as_int(params, "size", 100)
        if cursor < 0:
            raise ApiError(40068, "不合法的偏移量 (invalid cursor)")
        if not 1 <= size <= 100:
            raise ApiError(40069, "不合法的分页大小 (size must be 1..100)")
        return state.directory.member_page(dept_id, cursor, size)

    def _paged(self, items: list[dict[str, Any]], next_cursor: int | None) -> dict[str, Any]:
        result: dict[str, Any] = {"has_more": next_cursor is not None, "list": items}
        if next_cursor is not None:
            result["next_cursor"] = next_cursor
        return {"result": result}

    def _user_list(self, state: AppState, params: dict[str, Any], now: float) -> dict[str, Any]:
        userids, next_cursor = self._page(state, params)
        users = [state.directory.get_user(u) for u in userids]
        corp = state.config.corp_id
        return self._paged([u.as_api(corp) for u in users if u is not None], next_cursor)

    def _user_listsimple(
        self, state: AppState, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        userids, next_cursor = self._page(state, params)
        users = [state.directory.get_user(u) for u in userids]
        return self._paged(
            [{"userid": u.userid, "name": u.name} for u in users if u is not None], next_cursor
        )

    def _user_get(self, state: AppState, params: dict[str, Any], now: float) -> dict[str, Any]:
        userid = params.get("userid")
        if not userid:
            raise ApiError(40035, "缺少参数 userid")
        user = state.directory.get_user(str(userid))
        if user is None:
            raise ApiError(60121, "找不到该用户 (user not found)")
        return {"result": user.as_api(state.config.corp_id)}
