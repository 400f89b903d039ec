"""Request entry: wires each URL path to its handler and runs one call through the checks.

``/_sim/...`` goes to :mod:`dingtalk.simulator.control`. A DingTalk path is looked up in
:data:`ROUTES`; then, under the simulator's lock: count the call, parse its parameters,
record it, the IP window (:mod:`limits`), faults (:mod:`faults`), the HTTP method, the token
and access checks (:mod:`auth`), the app's rate limit and monthly quota (:mod:`limits`), and
finally the handler (:mod:`messaging`, :mod:`media`, :mod:`directory_api`), whose payload
becomes the success answer (:mod:`answers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dingtalk.simulator import directory_api, media, messaging, service_window
from dingtalk.simulator.answers import error_response, new_api_error, ok_response
from dingtalk.simulator.auth import authenticate, check_access, gettoken
from dingtalk.simulator.control import handle_control
from dingtalk.simulator.faults import pick_fault
from dingtalk.simulator.limits import ip_check, meter, rate_limit
from dingtalk.simulator.state import AppState, RecordedRequest, SimulatorState
from dingtalk.simulator.wire import ApiError, Response, json_response, parse_params

logger = logging.getLogger("dingtalk.simulator")

Handler = Callable[[SimulatorState, AppState, dict[str, Any], float], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Route:
    api: str
    handler: Handler | None  # None: gettoken, the one call made before there is a token
    metered: bool
    permission: str | None
    method: str = "POST"
    # New-API family (api.dingtalk.com/v1.0): token in a header, answers without errcode,
    # refusals as HTTP 4xx {code, message, requestid} (§0).
    new_api: bool = False


ROUTES: dict[str, Route] = {
    "/gettoken": Route("gettoken", None, False, None, "GET"),
    "/topapi/message/corpconversation/asyncsend_v2": Route(
        "asyncsend_v2", messaging.asyncsend_v2, True, "qyapi_base"
    ),
    "/topapi/message/corpconversation/getsendprogress": Route(
        "getsendprogress", messaging.getsendprogress, True, "qyapi_base"
    ),
    "/topapi/message/corpconversation/getsendresult": Route(
        "getsendresult", messaging.getsendresult, True, "qyapi_base"
    ),
    "/topapi/message/corpconversation/recall": Route(
        "recall", messaging.recall, True, "qyapi_base"
    ),
    "/topapi/message/corpconversation/status_bar/update": Route(
        "status_bar_update", messaging.status_bar_update, True, "qyapi_base"
    ),
    "/v1.0/exclusive/follow/message/send": Route(
        "follow_message_send",
        service_window.follow_message_send,
        True,
        "qyapi_service_account_message",
        new_api=True,
    ),
    "/topapi/message/mass/recall": Route(
        "mass_recall", service_window.mass_recall, True, "qyapi_service_account_message"
    ),
    "/v1.0/exclusive/follow/message/queryMsgSendRecords": Route(
        "query_send_records",
        service_window.query_send_records,
        True,
        "qyapi_service_account_message",
        new_api=True,
    ),
    "/call_back/get_call_back_failed_result": Route(
        "get_call_back_failed_result", service_window.failed_pushes, False, None, "GET"
    ),
    "/media/upload": Route("media_upload", media.media_upload, True, "qyapi_base"),
    "/topapi/v2/department/listsub": Route(
        "department_listsub", directory_api.department_listsub, False, "qyapi_get_department_list"
    ),
    "/topapi/v2/department/listsubid": Route(
        "department_listsubid", directory_api.department_listsubid, False, None
    ),
    "/topapi/user/listid": Route(
        "user_listid", directory_api.user_listid, False, "qyapi_get_member"
    ),
    "/topapi/v2/user/list": Route(
        "user_list", directory_api.user_list, False, "qyapi_get_department_member"
    ),
    "/topapi/user/listsimple": Route(
        "user_listsimple", directory_api.user_listsimple, False, "qyapi_get_department_member"
    ),
    "/topapi/v2/user/get": Route("user_get", directory_api.user_get, False, "qyapi_get_member"),
}


def handle(
    sim: SimulatorState,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    remote_ip: str = "127.0.0.1",
) -> Response:
    """Serve one HTTP request. ``headers`` keys are matched case-insensitively."""
    if path.startswith("/_sim"):
        return handle_control(sim, method, path, query, body, remote_ip)
    route = ROUTES.get(path.rstrip("/") or "/")
    if route is None:
        return json_response({"errcode": 404, "errmsg": f"api not found: {path}"}, status=404)
    with sim.lock:
        try:
            return serve(sim, route, method, path, query, headers, body, remote_ip)
        except ApiError as exc:
            return new_api_error(sim, exc) if route.new_api else error_response(sim, exc)
        except Exception as exc:
            # A fake must answer like DingTalk, never with a traceback; the log shows the bug.
            logger.exception("simulator error serving %s", route.api)
            return error_response(
                sim, ApiError(-1, f"系统繁忙 (simulator error: {type(exc).__name__})")
            )


def serve(
    sim: SimulatorState,
    route: Route,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    remote_ip: str,
) -> Response:
    """One DingTalk API call through every check to its handler (caller holds the lock)."""
    now = sim.clock.now()
    sim.calls[route.api] += 1
    params = parse_params(query, body, _content_type(headers))
    if sim.config.record_requests:
        sim.recorded.append(
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
    banned = ip_check(sim, remote_ip, now)
    if banned is not None:
        return banned
    faulted, hold = pick_fault(sim, route.api)
    if faulted is not None:
        return faulted
    _check_method(route, method)
    if route.handler is None:
        payload = gettoken(sim, params, now)
    else:
        token = _header(headers, "x-acs-dingtalk-access-token") if route.new_api else None
        state = authenticate(sim, path, token or query.get("access_token"), now)
        check_access(state, route.permission, path, remote_ip)
        rate_limit(sim, state, route.api, now)
        if route.metered:
            meter(sim, state, now)
        payload = route.handler(sim, state, params, now)
    if route.new_api:
        sim.errcodes[0] += 1
        response = json_response({**payload, "requestid": sim.next_request_id()})
        response.delay = hold + sim.faults.latency_s
        return response
    return ok_response(sim, payload, hold + sim.faults.latency_s)


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def _content_type(headers: Mapping[str, str]) -> str:
    return _header(headers, "content-type")


def _check_method(route: Route, method: str) -> None:
    if route.method == "GET" and method != "GET" and route.api == "gettoken":
        raise ApiError(43001, "需要GET请求 (GET required)")
    if route.method == "GET" and method != "GET":
        raise ApiError(43001, "需要GET请求 (GET required)")
    if route.method == "POST" and method != "POST":
        raise ApiError(43002, "需要POST请求 (POST required)")
