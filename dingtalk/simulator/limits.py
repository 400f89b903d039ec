"""Flow control: the documented limits that answer a call with an error or an IP ban.

Per IP: a sliding window of calls, then a ban (:func:`ip_check`, :func:`ban_ip`). Per app:
calls per second per API (:func:`rate_limit`, 90018) and the monthly quota of metered calls
(:func:`meter`, 90020). Per send: how many candidates one call may reach
(:func:`per_call_reach`). The silent per-recipient limits are applied by
:mod:`dingtalk.simulator.fanout` with the forbidden-list codes defined here.
"""

from __future__ import annotations

from collections import deque

from dingtalk.simulator.answers import ban_response
from dingtalk.simulator.clock import month_key
from dingtalk.simulator.config import EDITION_QUOTAS, Limits
from dingtalk.simulator.state import AppState, SimulatorState
from dingtalk.simulator.wire import ApiError, Response

# Forbidden-list reason codes (dingtalk-api.md §4.2).
CODE_APP_PER_MINUTE = 143103
CODE_DAILY_CAP = 143105
CODE_DUPLICATE = 143106
# The reference does not say what a fourth to_all_user send of the day does; the simulator
# accepts it (limits are silent) and reports everyone as OAPI self-protection.
CODE_TO_ALL_DAILY = 1430003


def per_call_reach(candidates: int, limits: Limits) -> tuple[int, int, int]:
    """How many of a send's candidate recipients one call may reach.

    The reference only says "one call reaches at most 5,000 people (internal app)". The
    simulator reaches the first 5,000 and reports every further person as forbidden with the
    per-minute code, never as delivered. Returns (reached, overflow, overflow code).
    """
    cap = limits.get("max_reach_per_call")
    if cap is None or candidates <= cap:
        return candidates, 0, CODE_APP_PER_MINUTE
    return cap, candidates - cap, CODE_APP_PER_MINUTE


def ip_check(sim: SimulatorState, ip: str, now: float) -> Response | None:
    """Count one call from ``ip``; the ban answer if it is (or now becomes) banned."""
    until = sim.ip_banned_until.get(ip)
    if until is not None and now < until:
        return ban_response(sim)
    threshold = sim.limits.get("ip_calls_per_window")
    if threshold is None:
        return None
    # Sliding window of one-second buckets: [second, calls] plus a running total.
    second = int(now)
    buckets, total = sim.ip_windows.get(ip) or (deque(), 0)
    horizon = second - sim.limits.ip_window_s
    while buckets and buckets[0][0] <= horizon:
        total -= buckets.popleft()[1]
    if buckets and buckets[-1][0] == second:
        buckets[-1][1] += 1
    else:
        buckets.append([second, 1])
    count = total + 1
    sim.ip_windows[ip] = (buckets, count)
    if count > threshold:
        sim.ip_banned_until[ip] = now + sim.limits.ip_ban_s
        sim.ip_bans += 1
        return ban_response(sim)
    return None


def ban_ip(sim: SimulatorState, ip: str, seconds: float | None = None) -> None:
    with sim.lock:
        sim.ip_banned_until[ip] = sim.clock.now() + (seconds or sim.limits.ip_ban_s)
        sim.ip_bans += 1


def unban_ip(sim: SimulatorState, ip: str) -> None:
    with sim.lock:
        sim.ip_banned_until.pop(ip, None)
        sim.ip_windows.pop(ip, None)


def rate_limit(sim: SimulatorState, state: AppState, api: str, now: float) -> None:
    """Per-app calls per second of one API; over the limit is 90018."""
    limit = sim.limits.get("per_app_api_calls_per_s")
    if limit is None:
        return
    second = int(now)
    if second != state.qps_second:
        state.qps_second = second
        state.qps_counts = {}
    count = state.qps_counts.get(api, 0) + 1
    state.qps_counts[api] = count
    if count > limit:
        raise ApiError(90018, f"当前应用调用该api超过限流,qps={limit}")


def meter(sim: SimulatorState, state: AppState, now: float) -> None:
    """Count one metered call against the app's monthly quota; past it is 90020."""
    quotas = sim.limits.get("monthly_quotas")
    if quotas is None:
        return
    month = month_key(now)
    if month != state.month:
        state.month = month
        state.month_calls = 0
    if state.month_calls >= quotas.get(state.config.edition, EDITION_QUOTAS[state.config.edition]):
        raise ApiError(90020, "当前企业调用量已超过月度限额 (monthly API quota exhausted)")
    state.month_calls += 1
