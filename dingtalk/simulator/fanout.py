"""Fan-out of one accepted send: who receives it, who is forbidden and why.

Candidates are the valid explicit userids plus everyone below the named departments (the
whole organisation for ``to_all_user``), counted once. One call reaches at most
``max_reach_per_call`` of them (:func:`dingtalk.simulator.limits.per_call_reach`); the rest,
and anyone over a silent per-recipient limit (same content twice a day, the daily cap, the
per-minute rate, the fourth ``to_all_user`` of the day), land in the task's forbidden list.
A huge department send with no per-recipient limit active is stored as the department list.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator

from dingtalk.simulator.limits import (
    CODE_APP_PER_MINUTE,
    CODE_DAILY_CAP,
    CODE_DUPLICATE,
    CODE_TO_ALL_DAILY,
    per_call_reach,
)
from dingtalk.simulator.readers import fails
from dingtalk.simulator.state import AppState, SimulatorState, Task

# A send to more candidates than this with no per-recipient limit active is stored as a
# department list instead of one entry per recipient.
LAZY_RECIPIENT_THRESHOLD = 20_000


def per_recipient_limits(sim: SimulatorState) -> bool:
    """Whether any limit or fault must look at each recipient on its own."""
    limits = sim.limits
    return bool(
        limits.get("same_content_once_per_day")
        or limits.get("per_user_daily_cap") is not None
        or limits.get("recipients_per_minute") is not None
        or sim.faults.failed_share > 0
    )


def deliver(
    sim: SimulatorState,
    state: AppState,
    task: Task,
    explicit: list[str],
    seen: set[str],
    depts: list[int],
    now: float,
    silenced: bool,
) -> None:
    """Fill the task's delivered, failed and forbidden lists (or its lazy departments)."""
    directory = state.directory
    dept_count = 0
    if depts:
        dept_count = directory.count_members(depts)
        subtree = {d for root in depts for d in directory.subtree(root)}
        overlap = 0
        for userid in explicit:
            user = directory.get_user(userid)
            if user is not None and any(d in subtree for d in user.dept_id_list):
                overlap += 1
        dept_count -= overlap
    candidates = len(explicit) + dept_count
    reach, overflow, overflow_code = per_call_reach(candidates, sim.limits)
    if overflow:
        task.overflow_forbidden = overflow
        sim.forbidden[overflow_code] += overflow
    if (
        depts
        and not silenced
        and reach > LAZY_RECIPIENT_THRESHOLD
        and not per_recipient_limits(sim)
    ):
        # Too many to list and nobody can be filtered: remember the departments instead.
        _deliver_each(sim, state, task, explicit, now, silenced)
        task.lazy_depts = list(depts)
        task.lazy_count = dept_count
        state.lazy_tasks.append(task.task_id)
        sim.deliveries += dept_count
        return
    people: Iterator[str] = itertools.chain(
        explicit, (u for u in directory.iter_recipients(depts) if u not in seen)
    )
    _deliver_each(sim, state, task, itertools.islice(people, reach), now, silenced)


def _deliver_each(
    sim: SimulatorState,
    state: AppState,
    task: Task,
    people: Iterator[str] | list[str],
    now: float,
    silenced: bool,
) -> None:
    delivered = task.delivered
    state.unindexed.append(task)
    if silenced:
        for userid in people:
            task.forbidden.append((userid, CODE_TO_ALL_DAILY, 3))
        sim.forbidden[CODE_TO_ALL_DAILY] += len(task.forbidden)
        return
    if not per_recipient_limits(sim):
        delivered.extend(people)
        sim.deliveries += len(delivered)
        return
    limits = sim.limits
    dedupe = limits.get("same_content_once_per_day")
    cap = limits.get("per_user_daily_cap")
    per_minute = limits.get("recipients_per_minute")
    content_key = hashlib.sha1(  # noqa: S324 - a content fingerprint, not security
        json.dumps(task.msg, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()
    used = state.minute_usage(now)
    failed_share = sim.faults.failed_share
    daily = state.daily_counts
    for userid in people:
        if dedupe and (userid, content_key) in state.seen_content:
            task.forbidden.append((userid, CODE_DUPLICATE, 1))
            sim.forbidden[CODE_DUPLICATE] += 1
            continue
        if cap is not None and daily.get(userid, 0) >= cap:
            task.forbidden.append((userid, CODE_DAILY_CAP, cap))
            sim.forbidden[CODE_DAILY_CAP] += 1
            continue
        if per_minute is not None and used >= per_minute:
            task.forbidden.append((userid, CODE_APP_PER_MINUTE, per_minute))
            sim.forbidden[CODE_APP_PER_MINUTE] += 1
            continue
        used += 1
        if dedupe:
            state.seen_content.add((userid, content_key))
        daily[userid] = daily.get(userid, 0) + 1
        if fails(failed_share, sim.config.seed, task.task_id, userid):
            task.failed.append(userid)
            continue
        delivered.append(userid)
    if per_minute is not None:
        state.minute_add(now, used - state.minute_usage(now))
    sim.deliveries += len(delivered)
