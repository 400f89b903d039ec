"""DingTalk's three kinds of answer, each counted in ``sim.errcodes``.

A success (``errcode`` 0 plus the payload), an errcode body for an :class:`ApiError`, and
the anti-abuse IP-ban answer (an HTML page, or ``{"status": 1111, ...}``). Every JSON answer
carries a fresh ``request_id``.
"""

from __future__ import annotations

import json
from typing import Any

from dingtalk.simulator.config import IpBanStyle
from dingtalk.simulator.state import SimulatorState
from dingtalk.simulator.wire import HTML_HEADERS, JSON_HEADERS, ApiError, Response, json_response

IP_BAN_HTML = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>访问被拒绝</title></head>"
    "<body><h1>访问被拒绝 Access denied</h1><p>您的IP访问频率过高, 请5分钟后再试。</p>"
    "<p>Too many requests from your IP address; retry in 5 minutes.</p></body></html>"
).encode()


def ok_response(sim: SimulatorState, payload: dict[str, Any], delay: float) -> Response:
    sim.errcodes[0] += 1
    response = json_response(
        {"errcode": 0, "errmsg": "ok", **payload, "request_id": sim.next_request_id()}
    )
    response.delay = delay
    return response


def error_response(sim: SimulatorState, exc: ApiError) -> Response:
    sim.errcodes[exc.errcode] += 1
    payload: dict[str, Any] = {"errcode": exc.errcode, "errmsg": exc.errmsg}
    if exc.sub_code is not None:
        payload["sub_code"] = exc.sub_code
        payload["sub_msg"] = exc.errmsg
    payload["request_id"] = sim.next_request_id()
    response = json_response(payload)
    response.delay = sim.faults.latency_s
    return response


def ban_response(sim: SimulatorState, style: str | None = None) -> Response:
    """The IP-ban answer in ``style`` ("html" or "json"; default: the limits' setting)."""
    sim.errcodes[1111] += 1
    if (style or sim.limits.ip_ban_style) == IpBanStyle.JSON:
        body = {"status": 1111, "wait": 5, "source": "x5", "punish": "deny"}
        return Response(200, list(JSON_HEADERS), json.dumps(body).encode())
    return Response(200, list(HTML_HEADERS), IP_BAN_HTML)


# New-API refusals (§0): HTTP status and code for each oapi errcode the handlers raise.
_NEW_API_CODES: dict[int, tuple[int, str]] = {
    40014: (400, "InvalidAuthentication"),
    41001: (400, "InvalidAuthentication"),
    42001: (400, "InvalidAuthentication"),
    40001: (400, "InvalidAuthentication"),
    90018: (403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"),
    90002: (403, "Forbidden.AccessDenied.QpsLimitForApi"),
    90020: (403, "Forbidden.AccessDenied.ApiCountLimitForOrg"),
    60020: (403, "Forbidden.AccessDenied.IpNotInWhiteList"),
    60011: (403, "Forbidden.AccessDenied.AccessTokenPermissionDenied"),
    -1: (429, "system.busy"),
}


def new_api_error(sim: SimulatorState, exc: ApiError) -> Response:
    """A refusal of an api.dingtalk.com/v1.0 call: HTTP 4xx ``{code, message, requestid}``."""
    sim.errcodes[exc.errcode] += 1
    if exc.errmsg == "uuid.repeat":
        status, code = 400, "uuid.repeat"
    elif exc.errcode == 88:
        status, code = _NEW_API_CODES.get(int(exc.sub_code or 0), (403, "Forbidden"))
    else:
        status, code = _NEW_API_CODES.get(exc.errcode, (400, "InvalidParameter"))
    body = {"code": code, "message": exc.errmsg, "requestid": sim.next_request_id()}
    response = json_response(body, status=status)
    response.delay = sim.faults.latency_s
    return response
