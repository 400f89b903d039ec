"""One message as a DingTalk phone shows it: markdown rendered, cards with their buttons.

Every link a message carries goes through ``/_sim/phones/open`` (:func:`open_link`), which
marks the message read, as opening it on a phone does, and then sends the browser on to the
link's address; it only ever sends on to an address the message itself carries. Uploaded
media the simulator kept (:mod:`dingtalk.simulator.media`) is served by ``/_sim/media/<id>``.
All text is escaped; the markdown subset is DingTalk's (headings, quotes, bold, italic,
links, images, lists, line breaks).
"""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")


class Links:
    """Builds the ``/_sim/phones/open`` address of each link of one message."""

    def __init__(self, app_key: str, userid: str, task_id: int) -> None:
        self.app_key, self.userid, self.task_id = app_key, userid, task_id

    def href(self, url: str) -> str:
        query = urlencode(
            {"app": self.app_key, "userid": self.userid, "task_id": self.task_id, "to": url}
        )
        return "/_sim/phones/open?" + query


def message_urls(msg: Mapping[str, Any]) -> set[str]:
    """Every address a message carries (the only ones ``/_sim/phones/open`` goes on to)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, str):
            if value.startswith(("http://", "https://", "dingtalk://", "eapp://")):
                found.add(value)
            found.update(m.group(2) for m in _LINK.finditer(value))
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(dict(msg))
    raw = msg.get("action_card", {}).get("btn_json_list") if msg.get("action_card") else None
    if isinstance(raw, str):  # a hand-built card may carry the list serialised
        with contextlib.suppress(ValueError):
            walk(json.loads(raw))
    return found


def _inline(text: str, links: Links) -> str:
    """Escape a line, then render its links, bold and italic."""
    out: list[str] = []
    last = 0
    for match in _LINK.finditer(text):
        out.append(_emphasis(html.escape(text[last : match.start()])))
        label = html.escape(match.group(1)) or html.escape(match.group(2))
        if match.group(0).startswith("!"):
            out.append(f"<span class='img-ref'>[{label or 'image 圖片'}]</span>")
        else:
            out.append(f"<a href='{html.escape(links.href(match.group(2)))}'>{label}</a>")
        last = match.end()
    out.append(_emphasis(html.escape(text[last:])))
    return "".join(out)


def _emphasis(escaped: str) -> str:
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
    return _ITALIC.sub(r"<em>\1</em>", escaped)


def _blocks(lines: list[str]) -> Iterator[tuple[str, list[str]]]:
    """Group lines into (kind, lines): p, h1..h6, quote, ul, ol."""
    kind: str = ""
    group: list[str] = []
    for line in lines:
        if not line.strip():
            if group:
                yield kind, group
            kind, group = "", []
            continue
        heading = _HEADING.match(line)
        if heading:
            if group:
                yield kind, group
            yield f"h{len(heading.group(1))}", [heading.group(2)]
            kind, group = "", []
            continue
        if line.lstrip().startswith(">"):
            this, text = "quote", line.lstrip()[1:].lstrip()
        elif _BULLET.match(line):
            this, text = "ul", _BULLET.match(line).group(1)  # type: ignore[union-attr]
        elif _NUMBERED.match(line):
            this, text = "ol", _NUMBERED.match(line).group(1)  # type: ignore[union-attr]
        else:
            this, text = "p", line
        if group and this != kind:
            yield kind, group
            group = []
        kind = this
        group.append(text)
    if group:
        yield kind, group


def markdown_html(text: str, links: Links) -> str:
    """DingTalk's markdown subset as HTML (headings shown one level below the phone's own)."""
    parts: list[str] = []
    for kind, lines in _blocks(str(text).replace("\r\n", "\n").split("\n")):
        rendered = [_inline(line, links) for line in lines]
        if kind.startswith("h"):
            level = min(6, int(kind[1]) + 3)
            parts.append(f"<p class='md-h' role='heading' aria-level='{level}'>{rendered[0]}</p>")
        elif kind == "quote":
            parts.append(f"<blockquote>{'<br>'.join(rendered)}</blockquote>")
        elif kind in ("ul", "ol"):
            items = "".join(f"<li>{item}</li>" for item in rendered)
            parts.append(f"<{kind}>{items}</{kind}>")
        else:
            parts.append(f"<p>{'<br>'.join(rendered)}</p>")
    return "".join(parts)


def _media(media: Mapping[str, Mapping[str, Any]], media_id: str) -> tuple[str, bool, str]:
    """(address, whether the simulator kept the bytes, file name) of one uploaded media id."""
    info = media.get(media_id) or {}
    return (
        f"/_sim/media/{quote(media_id, safe='')}",
        info.get("data") is not None,
        str(info.get("filename") or media_id),
    )


def _button(links: Links, title: object, url: object) -> str:
    return (
        f"<a class='button' href='{html.escape(links.href(str(url)))}'>"
        f"{html.escape(str(title))}</a>"
    )


def _action_card(card: Mapping[str, Any], links: Links) -> str:
    parts = [
        f"<p class='card-title'><strong>{html.escape(str(card.get('title', '')))}</strong></p>",
        f"<div class='md'>{markdown_html(str(card.get('markdown', '')), links)}</div>",
    ]
    if card.get("single_url"):
        parts.append(_button(links, card.get("single_title") or "Open 打開", card["single_url"]))
    buttons = card.get("btn_json_list") or []
    if isinstance(buttons, str):
        try:
            buttons = json.loads(buttons)
        except ValueError:
            buttons = []
    direction = "row" if str(card.get("btn_orientation")) == "1" else "column"
    if buttons:
        parts.append(f"<div class='buttons {direction}'>")
        parts += [
            _button(links, b.get("title", ""), b.get("action_url", ""))
            for b in buttons
            if isinstance(b, Mapping)
        ]
        parts.append("</div>")
    return "".join(parts)


def _oa(oa: Mapping[str, Any], links: Links, media: Mapping[str, Mapping[str, Any]]) -> str:
    head = oa.get("head") or {}
    body = oa.get("body") or {}
    colour = str(head.get("bgcolor", "FF1F5FA8"))[-6:]
    parts = [
        f"<div class='oa-head' style='background:#{html.escape(colour)}'>"
        f"{html.escape(str(head.get('text', '')))}</div>"
    ]
    if body.get("title"):
        parts.append(
            f"<p class='card-title'><strong>{html.escape(str(body['title']))}</strong></p>"
        )
    for row in body.get("form") or []:
        parts.append(
            f"<div>{html.escape(str(row.get('key', '')))} {html.escape(str(row.get('value', '')))}</div>"
        )
    if body.get("image"):
        src, kept, name = _media(media, str(body["image"]))
        parts.append(
            f"<img src='{src}' alt='{html.escape(str(body.get('title') or name))}'>"
            if kept
            else f"<p class='media'>Image 圖片: {html.escape(name)}</p>"
        )
    if body.get("content"):
        parts.append(f"<p>{html.escape(str(body['content']))}</p>")
    if oa.get("message_url"):
        parts.append(_button(links, "Open 打開", oa["message_url"]))
    return "".join(parts)


def message_html(
    msg: Mapping[str, Any], links: Links, media: Mapping[str, Mapping[str, Any]]
) -> str:
    """The body of one message as the phone shows it (the title and state are the caller's)."""
    msgtype = str(msg.get("msgtype", ""))
    body = msg.get(msgtype) or {}
    if not isinstance(body, Mapping):
        return ""
    if msgtype == "markdown":
        return f"<div class='md'>{markdown_html(str(body.get('text', '')), links)}</div>"
    if msgtype == "action_card":
        return _action_card(body, links)
    if msgtype == "oa":
        return _oa(body, links, media)
    if msgtype == "link":
        return (
            f"<p><strong>{html.escape(str(body.get('title', '')))}</strong></p>"
            f"<p>{html.escape(str(body.get('text', '')))}</p>"
            + _button(links, "Open 打開", body.get("messageUrl", ""))
        )
    if msgtype in ("image", "file", "voice"):
        src, kept, name = _media(media, str(body.get("media_id", "")))
        if msgtype == "image":
            return (
                f"<img src='{src}' alt='Image 圖片 {html.escape(name)}'>"
                if kept
                else f"<p class='media'>Image 圖片: {html.escape(name)}</p>"
            )
        if msgtype == "voice":
            seconds = html.escape(str(body.get("duration", "")))
            player = (
                f"<audio controls preload='none' src='{src}'></audio>"
                if kept
                else "<p class='meta'>(audio not kept by the simulator 模擬器未保存音訊)</p>"
            )
            return f"<p class='media'>Voice message 語音訊息 · {seconds} s 秒</p>{player}"
        link = f"<a href='{src}' download>{html.escape(name)}</a>" if kept else html.escape(name)
        return f"<p class='media'>File 檔案: {link}</p>"
    return f"<p>{html.escape(str(body.get('content', '')))}</p>"
