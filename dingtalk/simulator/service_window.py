"""The Service Window (互动服务窗) mass send, its recall and its send records (§8.1).

- ``follow_message_send`` (new API ``POST /v1.0/exclusive/follow/message/send``, JSON body,
  token in ``x-acs-dingtalk-access-token``): ``unionid`` (the service account), ``is_to_all``,
  ``msg_type`` (text, news_card, image, markdown, single_news_card, link, action_card; never
  voice or file), ``text_content``, ``media_id``, ``userid_list``, ``dep_id_list``,
  ``msg_body``, ``uuid``. A uuid seen before answers ``uuid.repeat`` and delivers nothing.
  All-follower and department sends over ``service_window_cap`` people are accepted but do not
  run (status 3); a send to more than one person skips anyone who already has the same content
  today (single-person sends are not deduplicated).
- ``mass_recall`` (oapi ``/topapi/message/mass/recall``, ``task_id``): within 24 hours.
- ``query_send_records`` (new API ``/v1.0/exclusive/follow/message/queryMsgSendRecords``):
  paged (``pageNumber`` from 1, ``pageSize`` up to 100), newest first, each with its status:
  0 waiting, 1 sending, 2 sent, 3 failed (not run), 4 recalled. (The reference names the
  status range 0-4, not each value's meaning; these meanings are the simulator's.)

The sent message is stored as a :class:`Task` with ``channel="service_window"`` and a message
shaped like a work notification's, so the phones page and inboxes show it unchanged.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dingtalk.simulator.directory import ROOT_DEPT_ID
from dingtalk.simulator.state import AppState, SimulatorState, Task
from dingtalk.simulator.wire import ApiError, as_bool, as_int, split_ids

CHANNEL = "service_window"
MSG_TYPES = frozenset(
    {"text", "news_card", "image", "markdown", "single_news_card", "link", "action_card"}
)
STATUS_WAITING, STATUS_SENDING, STATUS_SENT, STATUS_FAILED, STATUS_RECALLED = range(5)


def _message(state: AppState, params: dict[str, Any]) -> dict[str, Any]:
    """The send's message, in the work-notification shape the phones page reads."""
    kind = str(params.get("msg_type") or "")
    if kind not in MSG_TYPES:
        raise ApiError(
            40035,
            f"不合法的参数 msg_type ({kind or 'missing'}; allowed: text, "
            "news_card, image, markdown, single_news_card, link, action_card)",
        )
    if kind == "text":
        content = str(params.get("text_content") or "")
        if not content:
            raise ApiError(40035, "缺少参数 text_content")
        return {"msgtype": "text", "text": {"content": content}}
    if kind == "image":
        media_id = params.get("media_id")
        if media_id not in state.media:
            raise ApiError(40007, "不合法的媒体文件id (unknown media_id)")
        return {"msgtype": "image", "image": {"media_id": media_id}}
    body = params.get("msg_body")
    part = body.get(kind) if isinstance(body, dict) else None
    if not isinstance(part, dict):
        raise ApiError(40035, f"缺少参数 msg_body.{kind}")
    return {"msgtype": kind, kind: part}


def _audience(
    sim: SimulatorState, state: AppState, params: dict[str, Any], task: Task
) -> tuple[list[str], bool]:
    """(followers reached, whether the send counts against the department/all cap)."""
    to_all = as_bool(params.get("is_to_all", False))
    userids = split_ids(params.get("userid_list"))
    dept_raw = split_ids(params.get("dep_id_list"))
    most = sim.limits.get("service_window_max_list")
    if most is not None and (len(userids) > most or len(dept_raw) > most):
        raise ApiError(40035, f"不合法的参数 (a list holds at most {most} ids)")
    if not to_all and not userids and not dept_raw:
        raise ApiError(40035, "is_to_all, userid_list, dep_id_list 不能同时为空")
    followers = state.followers
    if to_all:
        return list(followers), True
    people = [u for u in dict.fromkeys(userids) if u in followers]
    task.invalid_userids = [u for u in dict.fromkeys(userids) if u not in followers]
    depts = [int(d) for d in dept_raw if d.isdigit() and int(d) in state.directory.departments]
    task.invalid_dept_ids = [
        int(d) if d.lstrip("-").isdigit() else -1
        for d in dept_raw
        if not (d.isdigit() and int(d) in state.directory.departments)
    ]
    task.dept_id_list = depts
    if depts:
        seen = set(people)
        roots = [ROOT_DEPT_ID] if ROOT_DEPT_ID in depts else depts
        people += [
            u for u in state.directory.iter_recipients(roots) if u in followers and u not in seen
        ]
    return people, bool(depts)


def follow_message_send(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    if str(params.get("unionid") or "") != state.config.service_account_id:
        raise ApiError(40035, "不合法的参数 unionid (not this app's service account)")
    uuid = str(params.get("uuid") or "") or None
    if uuid is not None and uuid in state.sw_uuids:
        raise ApiError(40035, "uuid.repeat")
    msg = _message(state, params)
    task = Task(
        task_id=sim.next_task_id(),
        app_key=state.config.app_key,
        created_at=now,
        msg=msg,
        title=_title(msg),
        userid_list=split_ids(params.get("userid_list")),
        dept_id_list=[],
        to_all_user=as_bool(params.get("is_to_all", False)),
        channel=CHANNEL,
        uuid=uuid,
    )
    people, capped = _audience(sim, state, params, task)
    cap = sim.limits.get("service_window_cap")
    state.tasks[task.task_id] = task
    if uuid is not None:
        state.sw_uuids[uuid] = task.task_id
    if capped and cap is not None and len(people) > cap:
        task.record_status = STATUS_FAILED  # over 100,000 people: the task does not run
        return {"task_id": str(task.task_id)}
    state.roll_day(now)
    dedupe = len(people) > 1 and sim.limits.get("same_content_once_per_day")
    key = (
        "sw:"
        + hashlib.sha1(  # noqa: S324 - a content fingerprint, not security
            json.dumps(msg, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
    )
    for userid in people:
        if dedupe and (userid, key) in state.seen_content:
            task.forbidden.append((userid, 143106, 1))
            continue
        if dedupe:
            state.seen_content.add((userid, key))
        task.delivered.append(userid)
    state.unindexed.append(task)
    sim.deliveries += len(task.delivered)
    return {"task_id": str(task.task_id)}


def _title(msg: dict[str, Any]) -> str:
    body = msg.get(msg["msgtype"], {})
    text = body.get("title") or body.get("content") or msg["msgtype"]
    return str(text)[:40]


def _sw_task(state: AppState, params: dict[str, Any], errcode: int) -> Task:
    task = state.tasks.get(as_int(params, "task_id"))
    if task is None or task.channel != CHANNEL:
        raise ApiError(errcode, "不合法的task_id (unknown Service Window task)")
    return task


def mass_recall(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    task = _sw_task(state, params, 400002)
    window = sim.limits.get("recall_window_s")
    if window is not None and now - task.created_at > window:
        raise ApiError(400002, "不合法的task_id (only messages of the last 24 hours are recalled)")
    if task.recalled_at is None:
        task.recalled_at = now
    return {}


def record_status(sim: SimulatorState, task: Task, now: float) -> int:
    if task.recalled_at is not None:
        return STATUS_RECALLED
    if task.record_status is not None:
        return task.record_status
    sent = (now - task.created_at) * sim.config.delivery_rate_per_s + 1
    return STATUS_SENT if sent >= len(task.delivered) else STATUS_SENDING


def query_send_records(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    page = as_int(params, "pageNumber", 1)
    size = as_int(params, "pageSize", 20)
    if page < 1 or not 1 <= size <= 100:
        raise ApiError(40035, "不合法的参数 pageNumber/pageSize (pageSize 1..100)")
    tasks = sorted(
        (t for t in state.tasks.values() if t.channel == CHANNEL),
        key=lambda t: t.task_id,
        reverse=True,
    )
    chosen = tasks[(page - 1) * size : page * size]
    return {
        "totalCount": len(tasks),
        "hasMore": page * size < len(tasks),
        "records": [
            {
                "taskId": str(t.task_id),
                "uuid": t.uuid or "",
                "msgType": t.msg["msgtype"],
                "status": record_status(sim, t, now),
                "sendTime": int(t.created_at * 1000),
                "receivers": len(t.delivered),
            }
            for t in chosen
        ],
    }


def failed_pushes(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    """``GET /call_back/get_call_back_failed_result``: pushes that failed, at most 200 a call;
    each is handed out once. Entries are ``{call_back_tag, event_time, event}`` (the real
    entries carry the event under a key named after its tag; the simulator keeps it plain)."""
    chosen = state.failed_pushes[:200]
    del state.failed_pushes[:200]
    return {"has_more": bool(state.failed_pushes), "failed_list": chosen}
