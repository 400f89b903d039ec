"""Builders and validation for work-notification ``msg`` bodies (dingtalk-api.md §3).

Each builder returns the exact dict DingTalk expects and validates it with
:func:`validate_msg`, which raises :class:`MessageInvalid` naming the offending field. The
client calls :func:`validate_msg` again before every send, so hand-built dicts are checked
too. Limits marked "doc" come from the API reference; the others fill gaps where the
reference is silent or only says "about", and are chosen conservatively.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dingtalk.errors import MessageInvalid

Message = dict[str, Any]

MAX_MSG_BYTES = 2048  # doc: whole msg, JSON-encoded UTF-8
MAX_TEXT_CONTENT_CHARS = 2048  # doc says "suggested 500"; the byte limit is what bites
MAX_MARKDOWN_TITLE_CHARS = 64  # doc silent; same as the action-card title
MAX_MARKDOWN_TEXT_CHARS = 5000  # doc
MAX_LINK_TITLE_CHARS = 100  # doc: "~100"
MAX_LINK_TEXT_CHARS = 500  # doc: "~500"
MAX_CARD_TITLE_CHARS = 64  # doc
MAX_CARD_MARKDOWN_CHARS = 1000  # doc: "suggested"; enforced so cards render whole
MAX_SINGLE_TITLE_CHARS = 20  # doc
MAX_SINGLE_URL_CHARS = 500  # doc
MAX_BUTTON_TITLE_CHARS = 20  # doc
MAX_BUTTON_URL_CHARS = 700  # doc
MAX_BUTTON_LIST_CHARS = 1000  # doc: the serialised btn_json_list
MAX_BUTTONS = 5  # doc silent for work notices; robot cards allow 2-5 vertical buttons
MAX_OA_HEAD_TEXT_CHARS = 10  # doc (TOP SDK)
MAX_OA_TITLE_CHARS = 50  # doc: "~50"
MAX_OA_FORM_ROWS = 6  # doc: only 6 rows are shown; more would be silently hidden
MAX_OA_STATUS_VALUE_CHARS = 20  # doc silent
MAX_VOICE_SECONDS = 60  # doc: positive integer below 60
MAX_MEDIA_ID_CHARS = 256  # doc silent

# Upload limits of the current media/upload page (the older 1 MB image / 10 MB file figures
# are in §12); file *messages* may only reference files of at most 10 MB.
MEDIA_TYPES: dict[str, tuple[int, frozenset[str]]] = {
    "image": (20 * 1024 * 1024, frozenset({"jpg", "jpeg", "gif", "png", "bmp"})),
    "voice": (2 * 1024 * 1024, frozenset({"amr", "mp3", "wav"})),
    "video": (20 * 1024 * 1024, frozenset({"mp4"})),
    "file": (
        20 * 1024 * 1024,
        frozenset({"doc", "docx", "xls", "xlsx", "ppt", "pptx", "zip", "pdf", "rar"}),
    ),
}
MAX_FILE_MESSAGE_BYTES = 10 * 1024 * 1024

MSG_TYPES = frozenset({"text", "image", "voice", "file", "link", "markdown", "oa", "action_card"})
URL_SCHEMES = ("https://", "http://", "dingtalk://", "eapp://")
_HEX8 = re.compile(r"^[0-9A-Fa-f]{8}$")
_STATUS_BG = re.compile(r"^0x[0-9A-Fa-f]{8}$")
_MEDIA_ID = re.compile(r"^\S+$")


@dataclass(frozen=True, slots=True)
class Button:
    title: str
    action_url: str


def encode_msg(msg: Mapping[str, Any]) -> str:
    """The JSON text sent on the wire; its UTF-8 length is what the 2048-byte limit counts."""
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"))


def _require_str(field: str, value: object, max_chars: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MessageInvalid(field, "is required and must be a non-empty string", code="required")
    if max_chars is not None and len(value) > max_chars:
        raise MessageInvalid(
            field,
            f"is {len(value)} characters long, the limit is {max_chars}",
            code="too_long",
            length=len(value),
            limit=max_chars,
        )
    return value


def _require_url(field: str, value: object, max_chars: int = 2048) -> str:
    url = _require_str(field, value, max_chars)
    if not url.startswith(URL_SCHEMES):
        raise MessageInvalid(field, f"must start with one of {', '.join(URL_SCHEMES)}", code="url")
    return url


def _require_media_id(field: str, value: object) -> str:
    media_id = _require_str(field, value, MAX_MEDIA_ID_CHARS)
    if not _MEDIA_ID.match(media_id):
        raise MessageInvalid(field, "must not contain whitespace")
    return media_id


def _body(msg: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    body = msg.get(key)
    if not isinstance(body, Mapping):
        raise MessageInvalid(key, f"msgtype {key!r} needs a {key!r} object")
    return body


def _validate_buttons(buttons: object) -> None:
    if not isinstance(buttons, Sequence) or isinstance(buttons, str | bytes):
        raise MessageInvalid("action_card.btn_json_list", "must be a list of buttons")
    if not 1 <= len(buttons) <= MAX_BUTTONS:
        raise MessageInvalid(
            "action_card.btn_json_list", f"has {len(buttons)} buttons, allowed 1 to {MAX_BUTTONS}"
        )
    for i, button in enumerate(buttons):
        if not isinstance(button, Mapping):
            raise MessageInvalid(f"action_card.btn_json_list[{i}]", "must be an object")
        _require_str(
            f"action_card.btn_json_list[{i}].title", button.get("title"), MAX_BUTTON_TITLE_CHARS
        )
        _require_url(
            f"action_card.btn_json_list[{i}].action_url",
            button.get("action_url"),
            MAX_BUTTON_URL_CHARS,
        )
    encoded = len(json.dumps(list(buttons), ensure_ascii=False, separators=(",", ":")))
    if encoded > MAX_BUTTON_LIST_CHARS:
        raise MessageInvalid(
            "action_card.btn_json_list",
            f"is {encoded} characters, the limit is {MAX_BUTTON_LIST_CHARS}",
            code="too_long",
            length=encoded,
            limit=MAX_BUTTON_LIST_CHARS,
        )


def _validate_action_card(card: Mapping[str, Any]) -> None:
    _require_str("action_card.title", card.get("title"), MAX_CARD_TITLE_CHARS)
    _require_str("action_card.markdown", card.get("markdown"), MAX_CARD_MARKDOWN_CHARS)
    has_single = "single_title" in card or "single_url" in card
    has_list = "btn_json_list" in card
    if has_single == has_list:
        raise MessageInvalid(
            "action_card", "needs either single_title+single_url or btn_orientation+btn_json_list"
        )
    if has_single:
        _require_str("action_card.single_title", card.get("single_title"), MAX_SINGLE_TITLE_CHARS)
        _require_url("action_card.single_url", card.get("single_url"), MAX_SINGLE_URL_CHARS)
        return
    if card.get("btn_orientation") not in ("0", "1"):
        raise MessageInvalid(
            "action_card.btn_orientation", 'must be "0" (vertical) or "1" (horizontal)'
        )
    _validate_buttons(card.get("btn_json_list"))


def _validate_oa(oa: Mapping[str, Any]) -> None:
    _require_url("oa.message_url", oa.get("message_url"))
    if "pc_message_url" in oa:
        _require_url("oa.pc_message_url", oa.get("pc_message_url"))
    head = oa.get("head")
    if not isinstance(head, Mapping):
        raise MessageInvalid("oa.head", "is required")
    if not isinstance(head.get("bgcolor"), str) or not _HEX8.match(head["bgcolor"]):
        raise MessageInvalid("oa.head.bgcolor", "must be 8 hex digits AARRGGBB without 0x")
    if "text" in head:
        _require_str("oa.head.text", head.get("text"), MAX_OA_HEAD_TEXT_CHARS)
    bar = oa.get("status_bar")
    if bar is not None:
        if not isinstance(bar, Mapping):
            raise MessageInvalid("oa.status_bar", "must be an object")
        _require_str(
            "oa.status_bar.status_value", bar.get("status_value"), MAX_OA_STATUS_VALUE_CHARS
        )
        if "status_bg" in bar and not _STATUS_BG.match(str(bar["status_bg"])):
            raise MessageInvalid("oa.status_bar.status_bg", "must look like 0xFFF65E5E")
    body = oa.get("body")
    if not isinstance(body, Mapping):
        raise MessageInvalid("oa.body", "is required")
    if "title" in body:
        _require_str("oa.body.title", body.get("title"), MAX_OA_TITLE_CHARS)
    form = body.get("form", [])
    if not isinstance(form, Sequence) or isinstance(form, str):
        raise MessageInvalid("oa.body.form", "must be a list of {key, value}")
    if len(form) > MAX_OA_FORM_ROWS:
        raise MessageInvalid(
            "oa.body.form", f"has {len(form)} rows, DingTalk shows {MAX_OA_FORM_ROWS}"
        )
    for i, row in enumerate(form):
        if not isinstance(row, Mapping) or not {"key", "value"} <= set(row):
            raise MessageInvalid(f"oa.body.form[{i}]", "must be an object with key and value")
    if "image" in body:
        _require_media_id("oa.body.image", body.get("image"))


def validate_msg(msg: Mapping[str, Any]) -> Message:
    """Check ``msg`` against §3 and the 2048-byte limit; returns it as a plain dict."""
    if not isinstance(msg, Mapping):
        raise MessageInvalid("msg", "must be an object")
    msgtype = msg.get("msgtype")
    if msgtype not in MSG_TYPES:
        raise MessageInvalid("msgtype", f"must be one of {', '.join(sorted(MSG_TYPES))}")
    extra = set(msg) - {"msgtype", msgtype}
    if extra:
        raise MessageInvalid(
            "msg", f"only one message type per message; unexpected {sorted(extra)}"
        )
    body = _body(msg, msgtype)
    if msgtype == "text":
        _require_str("text.content", body.get("content"), MAX_TEXT_CONTENT_CHARS)
    elif msgtype in ("image", "file"):
        _require_media_id(f"{msgtype}.media_id", body.get("media_id"))
    elif msgtype == "voice":
        _require_media_id("voice.media_id", body.get("media_id"))
        duration = body.get("duration")
        if (
            not isinstance(duration, str)
            or not duration.isdigit()
            or not 0 < int(duration) < MAX_VOICE_SECONDS
        ):
            raise MessageInvalid(
                "voice.duration", f'must be a string integer from "1" to "{MAX_VOICE_SECONDS - 1}"'
            )
    elif msgtype == "link":
        _require_url("link.messageUrl", body.get("messageUrl"))
        pic = _require_str("link.picUrl", body.get("picUrl"))
        if not pic.startswith(("@", "$")) and not pic.startswith(URL_SCHEMES):
            raise MessageInvalid("link.picUrl", "must be a media id or a URL", code="url")
        _require_str("link.title", body.get("title"), MAX_LINK_TITLE_CHARS)
        _require_str("link.text", body.get("text"), MAX_LINK_TEXT_CHARS)
    elif msgtype == "markdown":
        _require_str("markdown.title", body.get("title"), MAX_MARKDOWN_TITLE_CHARS)
        _require_str("markdown.text", body.get("text"), MAX_MARKDOWN_TEXT_CHARS)
    elif msgtype == "action_card":
        _validate_action_card(body)
    else:
        _validate_oa(body)
    size = len(encode_msg(msg).encode("utf-8"))
    if size > MAX_MSG_BYTES:
        raise MessageInvalid(
            "msg",
            f"is {size} bytes as JSON, the limit is {MAX_MSG_BYTES} bytes",
            code="too_big",
            length=size,
            limit=MAX_MSG_BYTES,
        )
    return dict(msg)


def validate_media_upload(media_type: str, filename: str, size: int) -> None:
    """Check a media/upload before sending (§5): known type, extension and size."""
    if media_type not in MEDIA_TYPES:
        raise MessageInvalid("type", f"must be one of {', '.join(sorted(MEDIA_TYPES))}")
    max_bytes, extensions = MEDIA_TYPES[media_type]
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if extension not in extensions:
        raise MessageInvalid(
            "media", f"a {media_type} must be one of {', '.join(sorted(extensions))}"
        )
    if size <= 0:
        raise MessageInvalid("media", "is empty")
    if size > max_bytes:
        raise MessageInvalid("media", f"is {size} bytes, the {media_type} limit is {max_bytes}")


def text(content: str) -> Message:
    return validate_msg({"msgtype": "text", "text": {"content": content}})


def markdown(title: str, text: str) -> Message:
    return validate_msg({"msgtype": "markdown", "markdown": {"title": title, "text": text}})


def link(message_url: str, pic_url: str, title: str, text: str) -> Message:
    return validate_msg(
        {
            "msgtype": "link",
            "link": {"messageUrl": message_url, "picUrl": pic_url, "title": title, "text": text},
        }
    )


def action_card_single(title: str, markdown: str, single_title: str, single_url: str) -> Message:
    card = {
        "title": title,
        "markdown": markdown,
        "single_title": single_title,
        "single_url": single_url,
    }
    return validate_msg({"msgtype": "action_card", "action_card": card})


def action_card_buttons(
    title: str, markdown: str, buttons: Sequence[Button], *, horizontal: bool = False
) -> Message:
    card = {
        "title": title,
        "markdown": markdown,
        "btn_orientation": "1" if horizontal else "0",
        "btn_json_list": [{"title": b.title, "action_url": b.action_url} for b in buttons],
    }
    return validate_msg({"msgtype": "action_card", "action_card": card})


def oa(
    message_url: str,
    head_bgcolor: str,
    *,
    head_text: str | None = None,
    title: str | None = None,
    form: Sequence[tuple[str, str]] = (),
    content: str | None = None,
    image: str | None = None,
    author: str | None = None,
    pc_message_url: str | None = None,
    status_value: str | None = None,
    status_bg: str | None = None,
) -> Message:
    head: dict[str, str] = {"bgcolor": head_bgcolor}
    if head_text is not None:
        head["text"] = head_text
    body: dict[str, Any] = {}
    if title is not None:
        body["title"] = title
    if form:
        body["form"] = [{"key": k, "value": v} for k, v in form]
    for key, value in (("content", content), ("image", image), ("author", author)):
        if value is not None:
            body[key] = value
    payload: dict[str, Any] = {"message_url": message_url, "head": head, "body": body}
    if pc_message_url is not None:
        payload["pc_message_url"] = pc_message_url
    if status_value is not None:
        payload["status_bar"] = {"status_value": status_value}
        if status_bg is not None:
            payload["status_bar"]["status_bg"] = status_bg
    return validate_msg({"msgtype": "oa", "oa": payload})


def image(media_id: str) -> Message:
    return validate_msg({"msgtype": "image", "image": {"media_id": media_id}})


def file(media_id: str) -> Message:
    return validate_msg({"msgtype": "file", "file": {"media_id": media_id}})


def voice(media_id: str, duration_s: int) -> Message:
    return validate_msg(
        {"msgtype": "voice", "voice": {"media_id": media_id, "duration": str(duration_s)}}
    )


def summary(msg: Mapping[str, Any]) -> str:
    """A one-line human title for a message (used by inbox views and logs)."""
    msgtype = str(msg.get("msgtype", ""))
    body = msg.get(msgtype)
    if not isinstance(body, Mapping):
        return msgtype
    if msgtype == "text":
        return str(body.get("content", ""))[:80]
    if msgtype == "oa":
        inner = body.get("body")
        if isinstance(inner, Mapping) and inner.get("title"):
            return str(inner["title"])
        return str(body.get("message_url", "oa"))
    if body.get("title"):
        return str(body["title"])
    return f"[{msgtype}]"
