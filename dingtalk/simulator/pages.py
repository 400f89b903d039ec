"""Training-mode HTML: simulated phones showing what each person received, as DingTalk would.

Self-contained pages (inline CSS, no scripts or external assets), labels in English and
Traditional Chinese, with header, navigation and main landmarks. No automatic refresh: a
"Refresh" link reloads. The overview pages and searches over every phone (userid or name);
each message is rendered by :mod:`dingtalk.simulator.render` (markdown, cards and their
buttons, images, files, voice), and its links go through ``/_sim/phones/open``.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from dingtalk.simulator.clock import UTC_OFFSET_S
from dingtalk.simulator.recipients import inbox, mark_read, recipients_search
from dingtalk.simulator.render import Links, message_html, message_urls
from dingtalk.simulator.state import SimulatorState
from dingtalk.simulator.wire import Response

PHONES_PER_PAGE = 24
MESSAGES_PER_PHONE = 5

_STYLE = """
body{font-family:system-ui,"Noto Sans CJK TC","PingFang TC","Microsoft JhengHei",sans-serif;background:#eef1f5;margin:0;padding:1rem;color:#1d2733}
h1{font-size:1.3rem}a{color:#0a4fb5}a:focus,button:focus,input:focus{outline:3px solid #1d2733;outline-offset:2px}
nav ul{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.8rem}
.phones{display:flex;flex-wrap:wrap;gap:1rem}
.phone{width:300px;border:10px solid #222;border-radius:28px;background:#fff;padding:.6rem;min-height:380px}
.phone h2{font-size:1rem;margin:.2rem 0 .6rem}
.msg{border:1px solid #d0d7de;border-radius:8px;padding:.5rem;margin-bottom:.5rem;overflow-wrap:anywhere}
.msg.unread{border-left:5px solid #0a4fb5}.msg.recalled{opacity:.6}
.msg img{max-width:100%}.msg audio{width:100%}
.md p,.msg p{margin:.3rem 0}.md-h{font-weight:bold}
blockquote{border-left:3px solid #8c959f;margin:.3rem 0;padding-left:.5rem}
.oa-head{color:#fff;padding:.2rem .4rem;border-radius:4px;min-height:1rem}
.button{display:block;text-align:center;padding:.45rem;margin-top:.4rem;border:1px solid #0a4fb5;border-radius:6px;text-decoration:none;font-weight:bold}
.buttons.row{display:flex;gap:.3rem}.buttons.row .button{flex:1}
.meta{font-size:.8rem;color:#4d5560}.status{font-size:.8rem;background:#fff4ce;padding:0 .3rem}
button{font-size:.8rem}
"""


def _hk_time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp + UTC_OFFSET_S))


def _layout(title: str, nav: str, content: str) -> bytes:
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><header><h1>{html.escape(title)}</h1></header>"
        f"<nav aria-label='Simulator 模擬器'>{nav}</nav><main>{content}</main></body></html>"
    )
    return page.encode()


def _nav(sim: SimulatorState, app_key: str, here: str) -> str:
    items = [
        f"<li><a href='/_sim/phones?app={quote(s.config.app_key)}'"
        + (" aria-current='page'" if s.config.app_key == app_key else "")
        + f">{html.escape(s.config.code)}</a></li>"
        for s in sim.apps.values()
    ]
    items.append(f"<li><a href='{html.escape(here)}'>Refresh 重新整理</a></li>")
    return f"<ul>{''.join(items)}</ul>"


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
    links = Links(app_key, userid, int(entry["task_id"]))
    bar = entry.get("status_bar")
    parts = [
        f"<article class='{' '.join(classes)}'><p class='meta'>{html.escape(entry['title'])}</p>",
        message_html(entry["msg"], links, sim.app(app_key).media) if not entry["recalled"] else "",
        f"<p class='meta'>Received 收到 {_hk_time(entry['received_at'])} · {state}</p>",
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
    parts.append("</article>")
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
        f"<section class='phone' aria-label='{html.escape(name)}'>"
        f"<h2><a href='{link}'>{html.escape(name)}</a></h2>"
        f"<p class='meta'>{html.escape(userid)} · {len(entries)} messages 則訊息</p>{items}"
        "</section>"
    )


def _pager(app_key: str, query: str, page: int, pages: int) -> str:
    def href(number: int) -> str:
        return "/_sim/phones?" + html.escape(
            urlencode({"app": app_key, "q": query, "page": number})
        )

    links = []
    if page > 1:
        links.append(f"<a href='{href(page - 1)}' rel='prev'>← Previous 上一頁</a>")
    links.append(f"<span>Page 第 {page} / {pages} 頁</span>")
    if page < pages:
        links.append(f"<a href='{href(page + 1)}' rel='next'>Next 下一頁 →</a>")
    return f"<nav aria-label='Pages 分頁'><p>{' · '.join(links)}</p></nav>"


def phones_page(
    sim: SimulatorState, app: str | None, query: Mapping[str, str] | None = None
) -> bytes:
    query = query or {}
    state = sim.app(app)
    app_key = state.config.app_key
    search = str(query.get("q", ""))[:100]
    raw_page = str(query.get("page", "1"))
    page = max(1, int(raw_page)) if raw_page.isdigit() else 1
    users, total = recipients_search(
        sim, app_key, search, (page - 1) * PHONES_PER_PAGE, PHONES_PER_PAGE
    )
    pages = max(1, -(-total // PHONES_PER_PAGE))
    phones = "".join(_phone_html(sim, app_key, u, MESSAGES_PER_PHONE) for u in users)
    if not phones:
        phones = (
            "<p>No phone matches 沒有相符的手機</p>"
            if search
            else "<p>No notices sent yet 尚未發出通知</p>"
        )
    title = f"Simulated phones 模擬手機 — {state.config.name} {state.config.name_tc}"
    here = "/_sim/phones?" + urlencode({"app": app_key, "q": search, "page": page})
    form = (
        "<form method='get' action='/_sim/phones' role='search'>"
        f"<input type='hidden' name='app' value='{html.escape(app_key)}'>"
        "<label for='q'>Find a phone by userid or name 以用戶ID或姓名搜尋手機</label> "
        f"<input id='q' name='q' type='search' value='{html.escape(search)}'> "
        "<button type='submit'>Search 搜尋</button></form>"
    )
    content = (
        f"<p class='meta'>Training mode 培訓模式 · simulated time 模擬時間 "
        f"{_hk_time(sim.clock.now())} HKT · {total} phones 部手機</p>{form}"
        f"{_pager(app_key, search, page, pages)}<div class='phones'>{phones}</div>"
    )
    return _layout(title, _nav(sim, app_key, here), content)


def phone_page(sim: SimulatorState, userid: str, app: str | None) -> bytes:
    state = sim.app(app)
    app_key = state.config.app_key
    title = f"Phone 手機 {userid}"
    here = f"/_sim/phones/{quote(userid)}?app={quote(app_key)}"
    back = f"<p><a href='/_sim/phones?app={quote(app_key)}'>← All phones 所有手機</a></p>"
    content = f"{back}<div class='phones'>{_phone_html(sim, app_key, userid, 200)}</div>"
    return _layout(title, _nav(sim, app_key, here), content)


def open_link(sim: SimulatorState, query: Mapping[str, str]) -> Response:
    """A tap on a message's link or button: the message is read, then the link opens.

    Only an address the message itself carries is followed (no open redirect).
    """
    app_key = sim.app(query.get("app") or None).config.app_key
    userid = str(query["userid"])
    task_id = int(query["task_id"])
    target = str(query["to"])
    task = sim.app(app_key).tasks[task_id]
    if target not in message_urls(task.msg):
        raise ValueError("the message carries no such link")
    if task.recalled_at is None:
        mark_read(sim, task_id, userid)
    return Response(303, [("Location", target), ("Content-Type", "text/plain")], b"see other")


def media_file(sim: SimulatorState, media_id: str, app: str | None) -> Response | None:
    """An uploaded file the simulator kept, for the phones' images, files and voice."""
    for state in [sim.app(app)] if app else list(sim.apps.values()):
        info = state.media.get(media_id)
        if info and info.get("data") is not None:
            headers = [
                ("Content-Type", str(info.get("content_type") or "application/octet-stream")),
                ("Content-Disposition", f"inline; filename*=UTF-8''{quote(info['filename'])}"),
            ]
            return Response(200, headers, info["data"])
    return None


def mark_read_form(sim: SimulatorState, data: Mapping[str, Any]) -> Response:
    app_key = sim.app(data.get("app") or None).config.app_key
    userid = str(data["userid"])
    mark_read(sim, int(data["task_id"]), userid)
    location = f"/_sim/phones/{quote(userid)}?app={quote(app_key)}"
    return Response(303, [("Location", location), ("Content-Type", "text/plain")], b"see other")
