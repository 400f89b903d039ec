"""Access tokens and access checks.

``gettoken`` trades an app's key and secret for a token (§1.1); every other call names its
app only through that token (:func:`authenticate`), then must come from a whitelisted IP and
hold the API's permission (:func:`check_access`). Tests revoke tokens to provoke 40014 and
friends (:func:`revoke_tokens`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from dingtalk.simulator.limits import rate_limit
from dingtalk.simulator.state import AppState, SimulatorState
from dingtalk.simulator.wire import ApiError

_TOKEN_MESSAGES = {
    40001: "获取access_token时Secret错误, 或者access_token无效",
    42001: "access_token超时",
}


def gettoken(sim: SimulatorState, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    app_key = params.get("appkey") or params.get("corpid")
    secret = params.get("appsecret") or params.get("corpsecret")
    state = sim.apps.get(str(app_key))
    if state is None or not secrets.compare_digest(str(secret or ""), state.config.app_secret):
        raise ApiError(40089, "不合法的corpid或corpsecret (invalid appkey or appsecret)")
    rate_limit(sim, state, "gettoken", now)
    lifetime = int(sim.limits.get("token_lifetime_s"))
    # Asking again while the token is valid returns the same token and extends it (§1.1).
    if state.token is None or now >= state.token_expires_at:
        state.token = secrets.token_hex(16)
    state.token_expires_at = now + lifetime
    sim.tokens[state.token] = (state, state.token_expires_at)
    return {"access_token": state.token, "expires_in": lifetime}


def authenticate(sim: SimulatorState, path: str, token: str | None, now: float) -> AppState:
    """The app a valid token belongs to; unknown, revoked and expired tokens are errors."""
    topapi = path.startswith("/topapi/")
    if not token:
        raise ApiError(41001, "缺少access_token参数")
    revoked = sim.revoked_tokens.get(token)
    if revoked is not None or token not in sim.tokens:
        code = revoked if revoked is not None else 40014
        if code == 88 or (code == 40014 and topapi):
            raise ApiError(
                88, "ding talk error[subcode=40014,submsg=不合法的access_token]", "40014"
            )
        raise ApiError(code, _TOKEN_MESSAGES.get(code, "不合法的access_token"))
    state, expires_at = sim.tokens[token]
    if now >= max(expires_at, state.token_expires_at if state.token == token else 0):
        raise ApiError(42001, "access_token超时")
    return state


def check_access(state: AppState, permission: str | None, path: str, remote_ip: str) -> None:
    """The app's IP whitelist (60020) and API permissions (60011, 88/60011 on topapi)."""
    if state.config.ip_whitelist is not None and remote_ip not in state.config.ip_whitelist:
        raise ApiError(60020, f"访问ip不在白名单之中,request ip={remote_ip}")
    permissions = state.config.permissions
    if permission and permissions is not None and permission not in permissions:
        if path.startswith("/topapi/"):
            raise ApiError(
                88, "ding talk error[subcode=60011,submsg=没有调用该接口的权限]", "60011"
            )
        raise ApiError(60011, "没有调用该接口的权限 (no permission)")


def revoke_tokens(sim: SimulatorState, app_key: str | None = None, errcode: int = 40014) -> int:
    """Invalidate current tokens; the next call with one gets ``errcode`` (40001/40014/42001/88)."""
    with sim.lock:
        count = 0
        for state in sim.apps.values():
            if app_key is not None and state.config.app_key != app_key:
                continue
            if state.token is not None:
                sim.revoked_tokens[state.token] = errcode
                state.token = None
                count += 1
        return count
