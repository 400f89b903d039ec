"""The contacts API over the simulated directory: department ``listsub``/``listsubid`` and
user ``listid``/``v2/user/list``/``listsimple``/``v2/user/get``.

Handlers take ``(sim, state, params, now)`` like the messaging ones; the data and its paging
arithmetic live in :mod:`dingtalk.simulator.directory`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dingtalk.simulator.directory import ROOT_DEPT_ID
from dingtalk.simulator.state import AppState, SimulatorState
from dingtalk.simulator.wire import ApiError, as_int


def _dept(state: AppState, params: Mapping[str, Any], default: int | None = None) -> int:
    dept_id = as_int(params, "dept_id", default)
    if dept_id not in state.directory.departments:
        raise ApiError(60003, "部门不存在 (department not found)")
    return dept_id


def _dept_name(state: AppState, dept_id: int, language: str) -> str:
    dept = state.directory.departments[dept_id]
    return dept.name if language == "en_US" or not dept.name_tc else dept.name_tc


def _page(state: AppState, params: Mapping[str, Any]) -> tuple[list[str], int | None]:
    dept_id = _dept(state, params)
    cursor = as_int(params, "cursor", 0)
    size = as_int(params, "size", 100)
    if cursor < 0:
        raise ApiError(40068, "不合法的偏移量 (invalid cursor)")
    if not 1 <= size <= 100:
        raise ApiError(40069, "不合法的分页大小 (size must be 1..100)")
    return state.directory.member_page(dept_id, cursor, size)


def _paged(items: list[dict[str, Any]], next_cursor: int | None) -> dict[str, Any]:
    result: dict[str, Any] = {"has_more": next_cursor is not None, "list": items}
    if next_cursor is not None:
        result["next_cursor"] = next_cursor
    return {"result": result}


def department_listsub(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    dept_id = _dept(state, params, ROOT_DEPT_ID)
    language = str(params.get("language", "zh_CN"))
    return {
        "result": [
            {
                "dept_id": child,
                "name": _dept_name(state, child, language),
                "parent_id": dept_id,
                "create_dept_group": True,
                "auto_add_user": True,
            }
            for child in state.directory.children(dept_id)
        ]
    }


def department_listsubid(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    dept_id = _dept(state, params)
    return {"result": {"dept_id_list": state.directory.children(dept_id)}}


def user_listid(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    dept_id = _dept(state, params)
    return {"result": {"userid_list": list(state.directory.members(dept_id))}}


def user_list(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    userids, next_cursor = _page(state, params)
    users = [state.directory.get_user(u) for u in userids]
    corp = state.config.corp_id
    return _paged([u.as_api(corp) for u in users if u is not None], next_cursor)


def user_listsimple(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    userids, next_cursor = _page(state, params)
    users = [state.directory.get_user(u) for u in userids]
    return _paged(
        [{"userid": u.userid, "name": u.name} for u in users if u is not None], next_cursor
    )


def user_get(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    userid = params.get("userid")
    if not userid:
        raise ApiError(40035, "缺少参数 userid")
    user = state.directory.get_user(str(userid))
    if user is None:
        raise ApiError(60121, "找不到该用户 (user not found)")
    return {"result": user.as_api(state.config.corp_id)}
