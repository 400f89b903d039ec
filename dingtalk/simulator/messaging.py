"""Work notifications: ``asyncsend_v2`` and the calls about a sent task (progress, result,
recall, status bar).

Every handler takes ``(sim, state, params, now)`` and returns the payload of a success; a
refusal is an :class:`ApiError`. A send is checked (agent, message, media, list sizes),
becomes a :class:`Task`, and :func:`dingtalk.simulator.fanout.deliver` decides its
recipients. Progress is paced by ``config.delivery_rate_per_s``; results list read and
unread people as :mod:`dingtalk.simulator.recipients` says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dingtalk.messages import MSG_TYPES, summary
from dingtalk.simulator.directory import ROOT_DEPT_ID
from dingtalk.simulator.fanout import deliver
from dingtalk.simulator.recipients import delivered_users, read_at
from dingtalk.simulator.state import AppState, SimulatorState, Task
from dingtalk.simulator.wire import ApiError, as_bool, as_int, split_ids


def check_agent(state: AppState, params: Mapping[str, Any], errcode: int = 40056) -> None:
    agent_id = params.get("agent_id")
    try:
        matches = int(str(agent_id)) == state.config.agent_id
    except (TypeError, ValueError):
        matches = False
    if not matches:
        raise ApiError(errcode, "不合法的agentId (invalid agent_id)")


def owned_task(state: AppState, params: Mapping[str, Any], name: str, errcode: int) -> Task:
    """The app's own task named by parameter ``name``."""
    task_id = as_int(params, name)
    task = state.tasks.get(task_id)
    if task is None:
        raise ApiError(errcode, f"不合法的{name} (unknown task)")
    return task


# -- sending -------------------------------------------------------------------------------------


def parse_msg(raw: Any) -> tuple[dict[str, Any], int]:
    """The ``msg`` parameter as a dict, and its size in bytes as sent."""
    if isinstance(raw, dict):
        msg = raw
        size = len(json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode())
    elif isinstance(raw, str) and raw:
        try:
            msg = json.loads(raw)
        except ValueError:
            raise ApiError(40035, "不合法的参数 msg (msg is not JSON)") from None
        size = len(raw.encode())
    else:
        raise ApiError(40035, "缺少参数 msg")
    if not isinstance(msg, dict):
        raise ApiError(40035, "不合法的参数 msg")
    msgtype = msg.get("msgtype")
    if msgtype not in MSG_TYPES or not isinstance(msg.get(msgtype), dict):
        raise ApiError(40035, "不合法的参数 msg.msgtype")
    return msg, size


def check_media(state: AppState, msg: Mapping[str, Any]) -> None:
    msgtype = msg["msgtype"]
    if msgtype in ("image", "file", "voice"):
        media_id = msg[msgtype].get("media_id")
        if media_id not in state.media:
            raise ApiError(40007, "不合法的媒体文件id (unknown media_id)")


def _send_request(
    sim: SimulatorState, state: AppState, params: dict[str, Any]
) -> tuple[dict[str, Any], list[str], list[str], bool]:
    """A checked send: (msg, userids, raw dept ids, to_all_user)."""
    check_agent(state, params)
    msg, size = parse_msg(params.get("msg"))
    max_bytes = sim.limits.get("max_msg_bytes")
    if max_bytes is not None and size > max_bytes:
        raise ApiError(40035, f"不合法的参数 msg (msg is {size} bytes, limit {max_bytes})")
    check_media(state, msg)
    userids = split_ids(params.get("userid_list"))
    dept_raw = split_ids(params.get("dept_id_list"))
    to_all = as_bool(params.get("to_all_user", False))
    max_users = sim.limits.get("max_userids_per_call")
    if max_users is not None and len(userids) > max_users:
        raise ApiError(40035, f"不合法的参数 userid_list (more than {max_users} userids)")
    max_depts = sim.limits.get("max_depts_per_call")
    if max_depts is not None and len(dept_raw) > max_depts:
        raise ApiError(40035, f"不合法的参数 dept_id_list (more than {max_depts} departments)")
    if not userids and not dept_raw and not to_all:
        raise ApiError(40035, "userid_list, dept_id_list, to_all_user 不能同时为空")
    return msg, userids, dept_raw, to_all


def asyncsend_v2(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    msg, userids, dept_raw, to_all = _send_request(sim, state, params)
    task = Task(
        task_id=sim.next_task_id(),
        app_key=state.config.app_key,
        created_at=now,
        msg=msg,
        title=summary(msg),
        userid_list=userids,
        dept_id_list=[],
        to_all_user=to_all,
    )
    if msg["msgtype"] == "oa" and isinstance(msg["oa"].get("status_bar"), dict):
        task.status_bar = {str(k): str(v) for k, v in msg["oa"]["status_bar"].items()}
    directory = state.directory
    depts: list[int] = []
    for raw in dept_raw:
        if raw.isdigit() and int(raw) in directory.departments:
            depts.append(int(raw))
        else:
            task.invalid_dept_ids.append(int(raw) if raw.lstrip("-").isdigit() else -1)
    task.dept_id_list = depts
    if to_all:
        depts = [ROOT_DEPT_ID]
    unique = list(dict.fromkeys(userids))
    explicit, task.invalid_userids = directory.partition(unique)
    seen = set(unique) if depts else set()
    sim.invalid_recipients += len(task.invalid_userids)
    state.roll_day(now)
    to_all_cap = sim.limits.get("to_all_user_per_day")
    if to_all:
        state.to_all_today += 1
    silenced = to_all and to_all_cap is not None and state.to_all_today > to_all_cap
    deliver(sim, state, task, explicit, seen, depts, now, silenced)
    state.tasks[task.task_id] = task
    return {"task_id": task.task_id}


# -- after the send ------------------------------------------------------------------------------


def progress_of(sim: SimulatorState, task: Task, now: float) -> tuple[int, int]:
    """(progress_in_percent, status): status 1 while sending, 2 when done."""
    total = task.total_recipients
    if total == 0:
        return 100, 2
    processed = (now - task.created_at) * sim.config.delivery_rate_per_s + 1
    percent = min(100, int(processed * 100 // total))
    return percent, 2 if percent >= 100 else 1


def check_window(
    sim: SimulatorState, task: Task, now: float, limit_name: str, errcode: int, what: str
) -> None:
    window = sim.limits.get(limit_name)
    if window is not None and now - task.created_at > window:
        raise ApiError(errcode, f"{what} (task is older than {int(window // 3600)} hours)")


def getsendprogress(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    check_agent(state, params, 40035)
    task = owned_task(state, params, "task_id", 40035)
    check_window(sim, task, now, "progress_window_s", 40035, "不合法的task_id")
    percent, status = progress_of(sim, task, now)
    return {"progress": {"progress_in_percent": percent, "status": status}}


def getsendresult(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    check_agent(state, params, 40035)
    task = owned_task(state, params, "task_id", 40035)
    check_window(sim, task, now, "result_window_s", 40035, "不合法的task_id")
    max_recipients = sim.limits.get("result_max_recipients")
    if max_recipients is not None and task.total_recipients > max_recipients:
        raise ApiError(41052, f"接收人数过多, 不再返回结果 (more than {max_recipients} recipients)")
    if progress_of(sim, task, now)[1] != 2:
        raise ApiError(41052, "消息发送中, 暂无结果 (task still in progress)")
    read: list[str] = []
    unread: list[str] = []
    for userid in delivered_users(state, task):
        moment = read_at(sim, task, userid)
        (read if moment is not None and moment <= now else unread).append(userid)
    return {
        "send_result": {
            "invalid_user_id_list": list(task.invalid_userids),
            "forbidden_user_id_list": [userid for userid, _, _ in task.forbidden],
            "failed_user_id_list": list(task.failed),
            "read_user_id_list": read,
            "unread_user_id_list": unread,
            "invalid_dept_id_list": list(task.invalid_dept_ids),
            "forbidden_list": [
                {"code": str(code), "count": count, "userid": userid}
                for userid, code, count in task.forbidden
            ],
        }
    }


def recall(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    check_agent(state, params, 400002)
    task = owned_task(state, params, "msg_task_id", 400002)
    check_window(sim, task, now, "recall_window_s", 400002, "不合法的msg_task_id")
    if task.recalled_at is None:
        task.recalled_at = now
    return {}


def status_bar_update(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    check_agent(state, params, 40056)
    task = owned_task(state, params, "task_id", 40035)
    check_window(sim, task, now, "status_bar_window_s", 40035, "不合法的task_id")
    if task.msg.get("msgtype") != "oa":
        raise ApiError(40035, "不合法的task_id (status bar needs an oa message)")
    if task.dept_id_list or task.to_all_user or len(task.userid_list) > 5:
        raise ApiError(41052, "接收人数过多 (status bar needs at most 5 userids)")
    value = params.get("status_value")
    if not value:
        raise ApiError(40035, "缺少参数 status_value")
    task.status_bar = {"status_value": str(value)}
    if params.get("status_bg"):
        task.status_bar["status_bg"] = str(params["status_bg"])
    return {}
