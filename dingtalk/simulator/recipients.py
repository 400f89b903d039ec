"""What the recipients see: when a notice reached each person, when they read it, and
each person's inbox (the training-mode phones and ``getsendresult`` read lists).

Delivery is paced at ``config.delivery_rate_per_s`` from the task's creation; reads follow
:mod:`dingtalk.simulator.readers` unless someone marked them explicitly (:func:`mark_read`).
Tasks sent lazily to whole departments are matched by department membership.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from dingtalk.simulator.readers import read_delay
from dingtalk.simulator.state import AppState, SimulatorState, Task


def delivered_at(sim: SimulatorState, task: Task, userid: str) -> float:
    position = task.position.get(userid, 0)
    return task.created_at + position / sim.config.delivery_rate_per_s


def read_at(sim: SimulatorState, task: Task, userid: str) -> float | None:
    """When ``userid`` reads ``task`` (simulated epoch seconds), or None for never."""
    explicit = task.reads.get(userid)
    readers = sim.config.readers
    automatic: float | None = None
    if readers.enabled and task.recalled_at is None:
        delay = read_delay(readers, sim.config.seed, task.task_id, userid)
        if delay is not None:
            automatic = delivered_at(sim, task, userid) + delay
    if explicit is None:
        return automatic
    return explicit if automatic is None else min(explicit, automatic)


def is_lazy_member(sim: SimulatorState, task: Task, userid: str) -> bool:
    """Whether a task stored as a department list reached ``userid``."""
    if task.lazy_depts is None:
        return False
    directory = sim.apps[task.app_key].directory
    user = directory.get_user(userid)
    if user is None:
        return False
    depts = {d for root in task.lazy_depts for d in directory.subtree(root)}
    return any(d in depts for d in user.dept_id_list)


def delivered_users(state: AppState, task: Task) -> Iterator[str]:
    """Everyone the task was delivered to, listed ones first."""
    yield from task.delivered
    if task.lazy_depts is not None:
        listed = set(task.delivered)
        for userid in state.directory.iter_recipients(task.lazy_depts):
            if userid not in listed:
                yield userid


def mark_read(sim: SimulatorState, task_id: int, userid: str, at: float | None = None) -> None:
    """Record that a simulated person opened a notice (at ``at``, default now)."""
    with sim.lock:
        task = sim.task(task_id)
        if userid not in task.position and not is_lazy_member(sim, task, userid):
            raise KeyError(f"{userid} did not receive task {task_id}")
        moment = sim.clock.now() if at is None else at
        task.reads[userid] = min(moment, task.reads.get(userid, moment))


def inbox(sim: SimulatorState, userid: str, app_key: str | None = None) -> list[dict[str, Any]]:
    """What one person's phone shows, newest first."""
    with sim.lock:
        state = sim.app(app_key)
        now = sim.clock.now()
        task_ids = list(state.inbox.get(userid, []))
        task_ids += [t for t in state.lazy_tasks if is_lazy_member(sim, state.tasks[t], userid)]
        entries = []
        for task_id in sorted(set(task_ids), reverse=True):
            task = state.tasks[task_id]
            received = delivered_at(sim, task, userid)
            if received > now:
                continue
            read = read_at(sim, task, userid)
            entries.append(
                {
                    "task_id": task_id,
                    "msg": task.msg,
                    "title": task.title,
                    "received_at": received,
                    "read_at": read if read is not None and read <= now else None,
                    "recalled": task.recalled_at is not None,
                    "status_bar": task.status_bar,
                }
            )
        return entries


def recipients_with_messages(
    sim: SimulatorState, app_key: str | None = None, limit: int = 50
) -> list[str]:
    """The people with an inbox, most recently indexed first."""
    with sim.lock:
        state = sim.app(app_key)
        return list(itertools.islice(reversed(list(state.inbox)), limit))


def recipients_search(
    sim: SimulatorState, app_key: str | None, query: str, offset: int, size: int
) -> tuple[list[str], int]:
    """One page of the people with an inbox (newest first) whose userid or name holds
    ``query``, and how many there are in all."""
    needle = query.strip().lower()
    with sim.lock:
        state = sim.app(app_key)
        people = list(reversed(list(state.inbox)))
        if needle:
            people = [
                userid
                for userid in people
                if needle in userid.lower()
                or needle in (getattr(state.directory.get_user(userid), "name", "") or "").lower()
            ]
            if not people and state.directory.get_user(query.strip()) is not None:
                people = [query.strip()]  # someone reached only through a department send
        return people[offset : offset + size], len(people)
