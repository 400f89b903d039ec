"""Training-mode HTML: simulated phones showing what each person received.

Self-contained pages (inline CSS, no scripts or external assets), labels in English and
Traditional Chinese.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from dingtalk.simulator.clock import UTC_OFFSET_S
from dingtalk.simulator.recipients import inbox, mark_read, recipients_with_messages
from dingtalk.simulator.state import SimulatorState
from dingtalk.simulator.wire import Response

_STYLE = """
body{font-family:system-ui,"PingFang TC","Microsoft JhengHei",sans-serif;background:#eef1f5;margin:0;padding:1rem;color:#1d2733}
h1{font-size:1.3rem}a{color:#0a58ca}
.phones{display:flex;flex-wrap:wrap;gap:1rem}
.phone{width:300px;border:10px solid #222;border-radius:28px;background:#fff;padding:.6rem;min-height:380px}
.phone h2{font-size:1rem;margin:.2rem 0 .6rem}
.msg{border:1px solid #d0d7de;border-radius:8px;padding:.5rem;margin-bottom:.5rem}
.msg.unread{border-left:5px solid #0a58ca}.msg.recalled{opacity:.5}
.meta{font-size:.8rem;color:#57606a}.status{font-size:.8rem;background:#fff4ce;padding:0 .3rem}
button{font-size:.8rem}
"""


def _hk_time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp + UTC_OFFSET_S))


def _layout(title: str, content: str) -> bytes:
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='refresh' content='10'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{content}</body></html>"
    )
    return page.encode()


def _message_html(sim: SimulatorState, app_key: str, userid: str, entry: Mapping[str, Any]) -> str:
    classes = ["msg"]
    if entry["recalled"]:
        classes.append("recalled")
        state = "Recalled 已撤回"
    elif entry["read_at"] is None:
        classes.append("unread")
        state = "Unread 未讀"
    else:
        state = f"Read 已讀 {_hk_time(entry['read_at'])}"
    body = entry["msg"].get(entry["msg"].get("msgtype"), {})
    inner = body.get("body") if isinstance(body.get("body"), dict) else body
    text = inner.get("content") or inner.get("text") or inner.get("markdown") or ""
    if entry["msg"].get("msgtype") == "voice":
        text = f"\U0001f50a Voice message 語音訊息 · {inner.get('duration', '?')} s"
    bar = entry.get("status_bar")
    parts = [
        f"<div class='{' '.join(classes)}'><strong>{html.escape(entry['title'])}</strong>",
        f"<div>{html.escape(str(text))[:400]}</div>",
        f"<div class='meta'>Received 收到 {_hk_time(entry['received_at'])} · {state}</div>",
    ]
    if bar:
        parts.append(f"<span class='status'>{html.escape(bar.get('status_value', ''))}</span>")
    if entry["read_at"] is None and not entry["recalled"]:
        parts.append(
            "<form method='post' action='/_sim/phones/read'>"
            f"<input type='hidden' name='app' value='{html.escape(app_key)}'>"
            f"<input type='hidden' name='userid' value='{html.escape(userid)}'>"
            f"<input type='hidden' name='task_id' value='{entry['task_id']}'>"
            "<button type='submit'>Mark as read 標記為已讀</button></form>"
        )
    parts.append("</div>")
    return "".join(parts)


def _phone_html(sim: SimulatorState, app_key: str, userid: str, limit: int = 20) -> str:
    state = sim.app(app_key)
    user = state.directory.get_user(userid)
    name = user.name if user else "(left the organisation 已離職)"
    entries = inbox(sim, userid, app_key)
    link = f"/_sim/phones/{quote(userid)}?app={quote(app_key)}"
    items = "".join(_message_html(sim, app_key, userid, e) for e in entries[:limit])
    if not items:
        items = "<p class='meta'>No messages 沒有訊息</p>"
    return (
        f"<div class='phone'><h2><a href='{link}'>{html.escape(name)}</a></h2>"
        f"<div class='meta'>{html.escape(userid)} · {len(entries)} messages 則訊息</div>{items}</div>"
    )


def phones_page(sim: SimulatorState, app: str | None) -> bytes:
    state = sim.app(app)
    app_key = state.config.app_key
    tabs = " · ".join(
        f"<a href='/_sim/phones?app={quote(s.config.app_key)}'>{html.escape(s.config.code)}</a>"
        for s in sim.apps.values()
    )
    users = recipients_with_messages(sim, app_key, 24)
    phones = "".join(_phone_html(sim, app_key, u, 5) for u in users)
    if not phones:
        phones = "<p>No notices sent yet 尚未發出通知</p>"
    title = f"Simulated phones 模擬手機 — {state.config.name} {state.config.name_tc}"
    content = (
        f"<h1>{html.escape(title)}</h1><p>{tabs}</p>"
        f"<p class='meta'>Training mode 培訓模式 · simulated time 模擬時間 "
        f"{_hk_time(sim.clock.now())} HKT</p><div class='phones'>{phones}</div>"
    )
    return _layout(title, content)


def phone_page(sim: SimulatorState, userid: str, app: str | None) -> bytes:
    state = sim.app(app)
    title = f"Phone 手機 {userid}"
    back = (
        f"<p><a href='/_sim/phones?app={quote(state.config.app_key)}'>← All phones 所有手機</a></p>"
    )
    content = f"<h1>{html.escape(title)}</h1>{back}<div class='phones'>{_phone_html(sim, state.config.app_key, userid, 200)}</div>"
    return _layout(title, content)


def mark_read_form(sim: SimulatorState, data: Mapping[str, Any]) -> Response:
    app_key = sim.app(data.get("app") or None).config.app_key
    userid = str(data["userid"])
    mark_read(sim, int(data["task_id"]), userid)
    location = f"/_sim/phones/{quote(userid)}?app={quote(app_key)}"
    return Response(303, [("Location", location), ("Content-Type", "text/plain")], b"see other")
