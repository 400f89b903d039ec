"""Inspection and control over HTTP under ``/_sim/`` (a prefix DingTalk does not use).

JSON endpoints (request bodies are JSON objects or form-encoded; ``app`` is an app_key or
agent_id and defaults to the first app):

- ``GET /_sim/health``, ``GET /_sim/apps``, ``GET /_sim/counters``, ``POST /_sim/reset``
- ``GET|POST /_sim/clock`` ``{"advance": seconds}`` / ``{"scale": factor}``
- ``GET|POST /_sim/limits`` ``{"enabled": false}`` or any :class:`Limits` field
- ``GET|POST /_sim/faults`` any :class:`Faults` field
- ``POST /_sim/inject`` ``{"api", "kind", "errcode", "sub_code", "times"}``
- ``GET|POST /_sim/readers`` any :class:`ReaderConfig` field
- ``POST /_sim/read`` ``{"task_id", "userid", "at"?}``
- ``POST /_sim/revoke-tokens`` ``{"app"?, "errcode"?}``
- ``POST /_sim/ban-ip`` ``{"ip", "seconds"?}``, ``POST /_sim/unban-ip`` ``{"ip"}``
- ``GET /_sim/requests?limit=&api=`` recorded wire requests
- ``GET /_sim/tasks/<task_id>``, ``GET /_sim/inbox/<userid>?app=``
- ``POST /_sim/callback-url`` ``{"app", "url"}``
- ``POST /_sim/directory/events`` ``{"app", "event_type", "userid"?, "dept_id"?, ...fields}``
  (directory changes at once; the push runs in a background thread)
- ``POST /_sim/check-url`` ``{"app"}``, ``GET /_sim/events``
- HTML: ``GET /_sim/phones?app=``, ``GET /_sim/phones/<userid>?app=``,
  ``POST /_sim/phones/read`` (form), ``GET /_sim/phones/open?app=&userid=&task_id=&to=``
  (a tapped link: marks read, then 303 to an address the message carries),
  ``GET /_sim/media/<media_id>`` (an uploaded file the simulator kept, up to 2 MB)
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from dingtalk.simulator.auth import revoke_tokens
from dingtalk.simulator.events import (
    apply_directory_change,
    apply_follow,
    check_url,
    post_event,
    push_or_keep,
)
from dingtalk.simulator.faults import inject
from dingtalk.simulator.limits import ban_ip, unban_ip
from dingtalk.simulator.pages import (
    mark_read_form,
    media_file,
    open_link,
    phone_page,
    phones_page,
)
from dingtalk.simulator.recipients import inbox, mark_read, read_at
from dingtalk.simulator.state import SimulatorState, Task
from dingtalk.simulator.wire import HTML_HEADERS, JSON_HEADERS, Response


def _json(payload: Any, status: int = 200) -> Response:
    return Response(
        status, list(JSON_HEADERS), json.dumps(payload, ensure_ascii=False, default=str).encode()
    )


def _ok() -> Response:
    return _json({"ok": True})


def _body(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    text = body.decode("utf-8")
    if text.lstrip().startswith("{"):
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data
    return dict(parse_qsl(text, keep_blank_values=True))


def task_json(sim: SimulatorState, task: Task) -> dict[str, Any]:
    now = sim.clock.now()
    reads = {u: read_at(sim, task, u) for u in task.delivered[:1000]}
    return {
        "task_id": task.task_id,
        "app": task.app_key,
        "created_at": task.created_at,
        "msg": task.msg,
        "userid_list": task.userid_list,
        "dept_id_list": task.dept_id_list,
        "to_all_user": task.to_all_user,
        "total_recipients": task.total_recipients,
        "delivered": len(task.delivered) + task.lazy_count,
        "failed": task.failed,
        "forbidden": [{"userid": u, "code": c, "count": n} for u, c, n in task.forbidden],
        "overflow_forbidden": task.overflow_forbidden,
        "invalid_userids": task.invalid_userids,
        "invalid_dept_ids": task.invalid_dept_ids,
        "read": sorted(u for u, t in reads.items() if t is not None and t <= now),
        "recalled_at": task.recalled_at,
        "status_bar": task.status_bar,
    }


def app_list(sim: SimulatorState) -> list[dict[str, Any]]:
    return [
        {
            "app_key": s.config.app_key,
            "app_secret": s.config.app_secret,
            "agent_id": s.config.agent_id,
            "code": s.config.code,
            "name": s.config.name,
            "name_tc": s.config.name_tc,
            "edition": s.config.edition,
            "corp_id": s.config.corp_id,
            "callback_url": s.config.callback_url,
            "callback_token": s.config.callback_token,
            "callback_aes_key": s.config.callback_aes_key,
            "users": s.directory.user_count(),
        }
        for s in sim.apps.values()
    ]


def _in_background(target: Any, *args: Any) -> None:
    # Pushes may call back into this very server (e.g. a receiver fetching v2/user/get),
    # so they must never run on the thread that serves requests.
    threading.Thread(target=target, args=args, daemon=True).start()


@dataclass(frozen=True, slots=True)
class ControlRequest:
    sim: SimulatorState
    method: str
    parts: list[str]  # path segments after /_sim
    query: Mapping[str, str]
    data: dict[str, Any]  # the POST body; empty for other methods
    remote_ip: str

    @property
    def app(self) -> Any:
        """The app named by the body or the query (app_key or agent_id); None = the first."""
        return self.data.get("app") or self.query.get("app") or None

    def optional_float(self, name: str) -> float | None:
        value = self.data.get(name)
        return None if value is None else float(value)


# A handler answers, or returns None when the path's further segments name nothing.
ControlHandler = Callable[[ControlRequest], Response | None]


# -- inspection and settings ---------------------------------------------------------------------


def _health(r: ControlRequest) -> Response:
    return _json({"ok": True, "now": r.sim.clock.now()})


def _apps(r: ControlRequest) -> Response:
    return _json(app_list(r.sim))


def _counters(r: ControlRequest) -> Response:
    return _json(r.sim.counters())


def _reset(r: ControlRequest) -> Response:
    r.sim.reset()
    return _ok()


def _clock(r: ControlRequest) -> Response:
    if "advance" in r.data:
        r.sim.advance(float(r.data["advance"]))
    if "scale" in r.data:
        r.sim.set_time_scale(float(r.data["scale"]))
    return _json({"now": r.sim.clock.now(), "scale": r.sim.clock.scale})


def _limits(r: ControlRequest) -> Response:
    if r.data:
        r.sim.set_limits(**r.data)
    return _json(dataclasses.asdict(r.sim.limits))


def _faults(r: ControlRequest) -> Response:
    if r.data:
        r.sim.set_faults(**r.data)
    return _json(dataclasses.asdict(r.sim.faults))


def _readers(r: ControlRequest) -> Response:
    if r.data:
        r.sim.set_readers(**r.data)
    return _json(dataclasses.asdict(r.sim.config.readers))


def _requests(r: ControlRequest) -> Response:
    limit = int(r.query.get("limit", "100"))
    return _json([req.as_json() for req in r.sim.requests(limit, r.query.get("api"))])


def _task(r: ControlRequest) -> Response | None:
    if len(r.parts) != 2:
        return None
    with r.sim.lock:
        return _json(task_json(r.sim, r.sim.task(int(r.parts[1]))))


def _inbox(r: ControlRequest) -> Response | None:
    if len(r.parts) != 2:
        return None
    return _json(inbox(r.sim, r.parts[1], r.app))


def _hko(r: ControlRequest) -> Response | None:
    """GET /_sim/hko/warnsum?lang=en|tc: the recorded warning summary the Observatory would
    answer (data.weather.gov.hk's shape); POST /_sim/hko {"en": {...}, "tc": {...}} records one.
    """
    if r.method == "POST":
        payloads = {lang: r.data.get(lang, {}) for lang in ("en", "tc")}
        if not all(isinstance(p, dict) for p in payloads.values()):
            raise ValueError("each language's summary must be a JSON object")
        with r.sim.lock:
            r.sim.hko_feed = payloads
        return _ok()
    if r.parts[1:] != ["warnsum"]:
        return None
    lang = r.query.get("lang", "en")
    if lang not in ("en", "tc"):
        raise ValueError("lang must be en or tc")
    with r.sim.lock:
        return _json(r.sim.hko_feed[lang])


def _events(r: ControlRequest) -> Response:
    with r.sim.lock:
        return _json(list(r.sim.events))


# -- actions -------------------------------------------------------------------------------------


def _inject(r: ControlRequest) -> Response:
    inject(
        r.sim,
        str(r.data.get("api", "*")),
        str(r.data.get("kind", "errcode")),
        errcode=int(r.data.get("errcode", -1)),
        sub_code=r.data.get("sub_code"),
        times=int(r.data.get("times", 1)),
    )
    return _ok()


def _read(r: ControlRequest) -> Response:
    mark_read(r.sim, int(r.data["task_id"]), str(r.data["userid"]), r.optional_float("at"))
    return _ok()


def _revoke_tokens(r: ControlRequest) -> Response:
    count = revoke_tokens(r.sim, r.app, int(r.data.get("errcode", 40014)))
    return _json({"revoked": count})


def _ban_ip(r: ControlRequest) -> Response:
    ban_ip(r.sim, str(r.data.get("ip", r.remote_ip)), r.optional_float("seconds"))
    return _ok()


def _unban_ip(r: ControlRequest) -> Response:
    unban_ip(r.sim, str(r.data.get("ip", r.remote_ip)))
    return _ok()


def _callback_url(r: ControlRequest) -> Response:
    with r.sim.lock:
        r.sim.app(r.app).config.callback_url = r.data.get("url") or None
    return _ok()


def _directory_events(r: ControlRequest) -> Response | None:
    if r.parts[1:] != ["events"]:
        return None
    fields = {
        k: v for k, v in r.data.items() if k not in ("app", "event_type", "userid", "dept_id")
    }
    dept_id = r.data.get("dept_id")
    app_key = r.sim.app(r.app).config.app_key
    event = apply_directory_change(
        r.sim,
        app_key,
        str(r.data.get("event_type")),
        r.data.get("userid"),
        None if dept_id is None else int(dept_id),
        **fields,
    )
    _in_background(post_event, r.sim, app_key, event)
    return _json({"queued": True, "event": event, "userid": event["UserId"][0]})


def _follow(r: ControlRequest) -> Response:
    """``POST /_sim/follow {app, userid, name?, follow: true|false}``: a citizen follows or
    leaves the Service Window; the event is pushed in the background."""
    app_key = r.sim.app(r.app).config.app_key
    follow = str(r.data.get("follow", "true")).lower() not in ("false", "0", "no")
    name = r.data.get("name")
    event = apply_follow(r.sim, app_key, str(r.data["userid"]), follow, name)
    _in_background(push_or_keep, r.sim, app_key, event)
    return _json({"queued": True, "event": event})


def _check_url(r: ControlRequest) -> Response:
    _in_background(check_url, r.sim, r.sim.app(r.app).config.app_key)
    return _json({"queued": True})


def _phones(r: ControlRequest) -> Response:
    if r.parts[1:] == ["read"] and r.method == "POST":
        return mark_read_form(r.sim, r.data)
    if r.parts[1:] == ["open"]:
        return open_link(r.sim, r.query)
    if len(r.parts) == 2:
        return Response(200, list(HTML_HEADERS), phone_page(r.sim, r.parts[1], r.app))
    return Response(200, list(HTML_HEADERS), phones_page(r.sim, r.app, r.query))


def _media(r: ControlRequest) -> Response | None:
    return media_file(r.sim, r.parts[1], r.query.get("app")) if len(r.parts) == 2 else None


@dataclass(frozen=True, slots=True)
class Endpoint:
    handler: ControlHandler
    post_only: bool = False


# First path segment after /_sim -> endpoint.
ENDPOINTS: dict[str, Endpoint] = {
    "health": Endpoint(_health),
    "apps": Endpoint(_apps),
    "counters": Endpoint(_counters),
    "reset": Endpoint(_reset, post_only=True),
    "clock": Endpoint(_clock),
    "limits": Endpoint(_limits),
    "faults": Endpoint(_faults),
    "readers": Endpoint(_readers),
    "inject": Endpoint(_inject, post_only=True),
    "read": Endpoint(_read, post_only=True),
    "revoke-tokens": Endpoint(_revoke_tokens, post_only=True),
    "ban-ip": Endpoint(_ban_ip, post_only=True),
    "unban-ip": Endpoint(_unban_ip, post_only=True),
    "requests": Endpoint(_requests),
    "tasks": Endpoint(_task),
    "inbox": Endpoint(_inbox),
    "callback-url": Endpoint(_callback_url, post_only=True),
    "directory": Endpoint(_directory_events, post_only=True),
    "check-url": Endpoint(_check_url, post_only=True),
    "follow": Endpoint(_follow, post_only=True),
    "events": Endpoint(_events),
    "phones": Endpoint(_phones),
    "media": Endpoint(_media),
    "hko": Endpoint(_hko),
}


def handle_control(
    sim: SimulatorState,
    method: str,
    path: str,
    query: Mapping[str, str],
    body: bytes,
    remote_ip: str,
) -> Response:
    """Serve one ``/_sim/...`` request: bad input is 400, an unknown endpoint 404."""
    parts = [p for p in path.split("/") if p][1:]
    endpoint = ENDPOINTS.get(parts[0] if parts else "health")
    response: Response | None = None
    try:
        data = _body(body) if method == "POST" else {}
        if endpoint is not None and (method == "POST" or not endpoint.post_only):
            response = endpoint.handler(ControlRequest(sim, method, parts, query, data, remote_ip))
    except (KeyError, ValueError, TypeError) as exc:
        return _json({"error": f"{type(exc).__name__}: {exc}"}, status=400)
    if response is None:
        return _json({"error": f"unknown control endpoint {method} {path}"}, status=404)
    return response
