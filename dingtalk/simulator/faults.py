"""Fault injection: deterministic (:func:`inject`) and randomised (``config.faults``).

:func:`pick_fault` runs for every DingTalk API call (never for ``/_sim/``) after the IP
check: an injected fault for this API wins, then the random rates are drawn in a fixed order
from the simulator's seeded generator. A timeout fault processes the call but holds the answer.
"""

from __future__ import annotations

from dingtalk.simulator.answers import ban_response, error_response
from dingtalk.simulator.config import FaultKind, IpBanStyle
from dingtalk.simulator.state import Injected, SimulatorState
from dingtalk.simulator.wire import ApiError, Response

FAULT_KINDS = frozenset(FaultKind)

_FAULT_MESSAGES = {
    -1: "系统繁忙",
    90002: "api调用超过全局限流",
    90018: "api调用超过应用限流",
    90020: "调用量超过月度限额",
}


def inject(
    sim: SimulatorState,
    api: str = "*",
    kind: str = FaultKind.ERRCODE,
    *,
    errcode: int = -1,
    sub_code: str | None = None,
    times: int = 1,
) -> None:
    """Answer the next ``times`` calls of ``api`` with a fault (deterministic injection).

    Kinds: ``errcode`` (with ``errcode``/``sub_code``), ``http_500``, ``timeout``
    (processed but held for ``faults.timeout_hold_s``), ``html_ban``, ``status_1111``,
    ``non_json``.
    """
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}")
    with sim.lock:
        sim.injected.append(Injected(api, kind, errcode, sub_code, times))


def pick_fault(sim: SimulatorState, api: str) -> tuple[Response | None, float]:
    """The fault answer for this call, if any, and the real seconds to hold a normal one."""
    for injected in sim.injected:
        if injected.api in ("*", api):
            injected.times -= 1
            if injected.times <= 0:
                sim.injected.remove(injected)
            return _fault_response(sim, injected.kind, injected.errcode, injected.sub_code)
    faults = sim.faults
    rnd = sim.fault_random
    if faults.http_5xx_rate and rnd.random() < faults.http_5xx_rate:
        return _fault_response(sim, FaultKind.HTTP_500, 0, None)
    if faults.busy_rate and rnd.random() < faults.busy_rate:
        return _fault_response(sim, FaultKind.ERRCODE, -1, None)
    if faults.global_throttle_rate and rnd.random() < faults.global_throttle_rate:
        return _fault_response(sim, FaultKind.ERRCODE, 90002, None)
    if faults.error_rate and rnd.random() < faults.error_rate:
        return _fault_response(sim, FaultKind.ERRCODE, rnd.choice(faults.error_codes), None)
    if faults.timeout_rate and rnd.random() < faults.timeout_rate:
        return None, faults.timeout_hold_s
    return None, 0.0


def _fault_response(
    sim: SimulatorState, kind: str, errcode: int, sub_code: str | None
) -> tuple[Response | None, float]:
    if kind == FaultKind.TIMEOUT:
        return None, sim.faults.timeout_hold_s
    if kind == FaultKind.HTTP_500:
        sim.errcodes[500] += 1
        return Response(
            500,
            [("Content-Type", "text/html")],
            b"<html><body>500 Internal Server Error</body></html>",
        ), 0.0
    if kind == FaultKind.HTML_BAN:
        return ban_response(sim, IpBanStyle.HTML), 0.0
    if kind == FaultKind.STATUS_1111:
        return ban_response(sim, IpBanStyle.JSON), 0.0
    if kind == FaultKind.NON_JSON:
        sim.errcodes[502] += 1
        return Response(200, [("Content-Type", "text/plain")], b"upstream gateway hiccup"), 0.0
    exc = ApiError(errcode, _FAULT_MESSAGES.get(errcode, f"injected error {errcode}"), sub_code)
    return error_response(sim, exc), 0.0
