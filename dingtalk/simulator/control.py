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
  ``POST /_sim/phones/read`` (form)
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from dingtalk.simulator.core import HTML_HEADERS, JSON_HEADERS, Response
from dingtalk.simulator.events import apply_directory_change, check_url, post_event

if TYPE_CHECKING:
    from dingtalk.simulator.core import Simulator, Task


def _json(payload: Any, status: int = 200) -> Response:
    return Response(
        status, list(JSON_HEADERS), json.dumps(payload, ensure_ascii=False, default=str).encode()
    )


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


def task_json(sim: Simulator, task: Task) -> dict[str, Any]:
    now = sim.clock.now()
    reads = {u: sim.read_at(task, u) for u in task.delivered[:1000]}
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


def _apps(sim: Simulator) -> list[dict[str, Any]]:
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


def handle_control(
    sim: Simulator, method: str, path: str, query: Mapping[str, str], body: bytes, remote_ip: str
) -> Response:
    from dingtalk.simulator.pages import mark_read_form, phone_page, phones_page

    parts = [p for p in path.split("/") if p][1:]
    name = parts[0] if parts else "health"
    try:
        data = _body(body) if method == "POST" else {}
        app = data.get("app") or query.get("app") or None
        if name == "health":
            return _json({"ok": True, "now": sim.clock.now()})
        if name == "apps":
            return _json(_apps(sim))
        if name == "counters":
            return _json(sim.counters())
        if name == "reset" and method == "POST":
            sim.reset()
            return _json({"ok": True})
        if name == "clock":
            if "advance" in data:
                sim.advance(float(data["advance"]))
            if "scale" in data:
                sim.set_time_scale(float(data["scale"]))
            return _json({"now": sim.clock.now(), "scale": sim.clock.scale})
        if name == "limits":
            if data:
                sim.set_limits(**data)
            return _json(dataclasses.asdict(sim.limits))
        if name == "faults":
            if data:
                sim.set_faults(**data)
            return _json(dataclasses.asdict(sim.faults))
        if name == "readers":
            if data:
                sim.set_readers(**data)
            return _json(dataclasses.asdict(sim.config.readers))
        if name == "inject" and method == "POST":
            sim.inject(
                str(data.get("api", "*")),
                str(data.get("kind", "errcode")),
                errcode=int(data.get("errcode", -1)),
                sub_code=data.get("sub_code"),
                times=int(data.get("times", 1)),
            )
            return _json({"ok": True})
        if name == "read" and method == "POST":
            at = data.get("at")
            sim.mark_read(
                int(data["task_id"]), str(data["userid"]), None if at is None else float(at)
            )
            return _json({"ok": True})
        if name == "revoke-tokens" and method == "POST":
            count = sim.revoke_tokens(app, int(data.get("errcode", 40014)))
            return _json({"revoked": count})
        if name == "ban-ip" and method == "POST":
            seconds = data.get("seconds")
            sim.ban_ip(str(data.get("ip", remote_ip)), None if seconds is None else float(seconds))
            return _json({"ok": True})
        if name == "unban-ip" and method == "POST":
            sim.unban_ip(str(data.get("ip", remote_ip)))
            return _json({"ok": True})
        if name == "requests":
            limit = int(query.get("limit", "100"))
            return _json([r.as_json() for r in sim.requests(limit, query.get("api"))])
        if name == "tasks" and len(parts) == 2:
            with sim.lock:
                return _json(task_json(sim, sim.task(int(parts[1]))))
        if name == "inbox" and len(parts) == 2:
            return _json(sim.inbox(parts[1], app))
        if name == "callback-url" and method == "POST":
            with sim.lock:
                sim.app(app).config.callback_url = data.get("url") or None
            return _json({"ok": True})
        if name == "directory" and parts[1:] == ["events"] and method == "POST":
            fields = {
                k: v for k, v in data.items() if k not in ("app", "event_type", "userid", "dept_id")
            }
            dept_id = data.get("dept_id")
            app_key = sim.app(app).config.app_key
            event = apply_directory_change(
                sim,
                app_key,
                str(data.get("event_type")),
                data.get("userid"),
                None if dept_id is None else int(dept_id),
                **fields,
            )
            _in_background(post_event, sim, app_key, event)
            return _json({"queued": True, "event": event, "userid": event["UserId"][0]})
        if name == "check-url" and method == "POST":
            _in_background(check_url, sim, sim.app(app).config.app_key)
            return _json({"queued": True})
        if name == "events":
            with sim.lock:
                return _json(list(sim.events))
        if name == "phones":
            if parts[1:] == ["read"] and method == "POST":
                return mark_read_form(sim, data)
            if len(parts) == 2:
                return Response(200, list(HTML_HEADERS), phone_page(sim, parts[1], app))
            return Response(200, list(HTML_HEADERS), phones_page(sim, app))
    except (KeyError, ValueError, TypeError) as exc:
        return _json({"error": f"{type(exc).__name__}: {exc}"}, status=400)
    return _json({"error": f"unknown control endpoint {method} {path}"}, status=404)
