"""DingTalk's wire format: the :class:`Response` a server writes, :class:`ApiError`, and
request parsing (form, multipart and JSON bodies; parameter coercion).

Nothing here knows the simulator's state; every other simulator module builds on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

JSON_HEADERS = [("Content-Type", "application/json;charset=utf-8")]
HTML_HEADERS = [("Content-Type", "text/html;charset=utf-8")]


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    delay: float = 0.0  # real seconds to hold the answer (latency and timeout faults)


class ApiError(Exception):
    """Raised inside handlers; turned into DingTalk's errcode body."""

    def __init__(self, errcode: int, errmsg: str, sub_code: str | None = None) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg
        self.sub_code = sub_code


def json_response(payload: Mapping[str, Any], status: int = 200) -> Response:
    """A compact UTF-8 JSON answer, as DingTalk writes them."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, list(JSON_HEADERS), body)


# -- request bodies ------------------------------------------------------------------------------


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


def _multipart_boundary(content_type: str) -> str:
    boundary = ""
    for piece in content_type.split(";"):
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    return boundary


def _part_head(head: bytes) -> tuple[str, str, str]:
    """A multipart part's (field name, file name, content type)."""
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
    return name, filename, part_type


def parse_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    """Minimal multipart/form-data parser: text fields as str, file parts as dicts."""
    boundary = _multipart_boundary(content_type)
    if not boundary:
        raise ApiError(43008, "需要multipart请求 (multipart boundary missing)")
    fields: dict[str, Any] = {}
    for part in body.split(b"--" + boundary.encode()):
        if part in (b"", b"--", b"--\r\n", b"\r\n") or part.startswith(b"--"):
            continue
        head, _, content = part.strip(b"\r\n").partition(b"\r\n\r\n")
        name, filename, part_type = _part_head(head)
        if not name:
            continue
        if filename:
            fields[name] = {
                "filename": filename,
                "content_type": part_type,
                "size": len(content),
                "data": content,
            }
        else:
            fields[name] = content.decode("utf-8", "replace")
    return fields


def parse_params(query: Mapping[str, str], body: bytes, content_type: str) -> dict[str, Any]:
    """A call's parameters: the query (less ``access_token``) plus the body of any kind."""
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


# -- parameter values ----------------------------------------------------------------------------


def split_ids(value: Any) -> list[str]:
    """A comma-separated id list (or a JSON list) as stripped strings."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value)
    parts = text.split(",")
    if " " in text or "" in parts:
        return [part.strip() for part in parts if part.strip()]
    return parts


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1")


def as_int(params: Mapping[str, Any], name: str, default: int | None = None) -> int:
    """An integer parameter; missing or malformed ones are DingTalk's 40035."""
    value = params.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        raise ApiError(40035, f"缺少参数 {name} (missing parameter {name})")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(40035, f"不合法的参数 {name} (illegal parameter {name})") from None
