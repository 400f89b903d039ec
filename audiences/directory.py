"""Reading a department's DingTalk directory: its client, call pacing, and the full walk.

Network only: nothing here touches the database (audiences.sync applies what is read).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings

from accounts.models import Department
from accounts.secrets import resolve_secret_ref
from audiences.validation import normalise_hk_mobile
from dingtalk.client import DingTalkClient
from dingtalk.client import User as DingTalkUser
from dingtalk.errors import Throttled

T = TypeVar("T")
MAX_THROTTLE_RETRIES = 5


def directory_client(department: Department) -> DingTalkClient:
    """A client for the department's own DingTalk app (the secret is resolved, never stored)."""
    return DingTalkClient(
        department.dingtalk_app_key,
        resolve_secret_ref(department.dingtalk_secret_ref),
        department.dingtalk_agent_id or 0,
        base_url=settings.DINGTALK_BASE_URL,
    )


class Pacer:
    """Spaces calls evenly under the app's per-API limit, and waits out a throttle reply."""

    def __init__(self, calls_per_second: float) -> None:
        self.interval = 1.0 / max(calls_per_second, 0.1)
        self.next_at = 0.0
        self.throttled = 0

    def call(self, fn: Callable[[], T]) -> T:
        for attempt in range(MAX_THROTTLE_RETRIES + 1):
            now = time.monotonic()
            if now < self.next_at:
                time.sleep(self.next_at - now)
            self.next_at = max(now, self.next_at) + self.interval
            try:
                return fn()
            except Throttled as exc:
                self.throttled += 1
                if attempt == MAX_THROTTLE_RETRIES:
                    raise
                time.sleep(min(exc.retry_after or 1.0, 10.0) * (attempt + 1))
        raise AssertionError("unreachable")


@dataclass
class DirectoryPerson:
    userid: str
    name: str
    mobile: str
    dept_ids: list[int]


@dataclass
class DirectorySnapshot:
    people: dict[str, DirectoryPerson]
    parents: dict[int, int]
    calls: int
    throttled: int
    root: int = 1


def walk_directory(client: DingTalkClient, *, root: int, pacer: Pacer) -> DirectorySnapshot:
    """listsubid from the root down, then v2/user/list with cursor paging for every department."""
    parents: dict[int, int] = {}
    order: list[int] = []
    pending = [root]
    calls = 0
    while pending:
        dept_id = pending.pop(0)
        order.append(dept_id)
        children = pacer.call(lambda d=dept_id: client.list_sub_department_ids(d))  # type: ignore[misc]
        calls += 1
        for child in children:
            parents[child] = dept_id
            pending.append(child)
    people: dict[str, DirectoryPerson] = {}
    for dept_id in order:
        cursor: int | None = 0
        while cursor is not None:
            page = pacer.call(lambda d=dept_id, c=cursor: client.list_users(d, c, 100))  # type: ignore[misc]
            calls += 1
            for user in page.users:
                people[user.userid] = person_from_user(user)
            cursor = page.next_cursor if page.has_more else None
    return DirectorySnapshot(
        people=people, parents=parents, calls=calls, throttled=pacer.throttled, root=root
    )


def person_from_user(user: DingTalkUser) -> DirectoryPerson:
    """A DingTalk user as the recipient sees them: name tidied, mobile in E.164 or empty."""
    mobile = user.e164_mobile
    return DirectoryPerson(
        userid=user.userid,
        name=" ".join(user.name.split())[:100],
        mobile=(normalise_hk_mobile(mobile) or "") if mobile else "",
        dept_ids=list(user.dept_id_list),
    )
