"""How many people an organisation- or department-wide send reaches: the DingTalk directory's
members, counted with the time they were counted.

``to_all_user`` reaches every member of the app's organisation and ``dept_id_list`` every member
of the listed departments and all below them (dingtalk-api.md §2.1), whether or not they are
portal recipients. The full directory sync (``audiences.sync``) stores these counts as it
applies the directory; ``directory_members_count`` counts without touching recipients (a walk
of ``listsubid`` and ``user/listid``, both exempt from the metered quota), for a department
whose recipients come from imports (``manage.py count_directory_members``; ``make run`` runs it
for the demo departments once the simulator is up).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from accounts.models import Department
from audiences.directory import Pacer, directory_client
from audiences.models import DirectorySettings
from dingtalk.client import DingTalkClient


@dataclass(frozen=True)
class MemberCounts:
    total: int
    by_dept: dict[int, int]  # distinct members of each department and everything below it
    counted_at: datetime | None


def ancestors(dept_id: int, parents: dict[int, int], root: int) -> list[int]:
    """``dept_id`` and the departments above it up to ``root``."""
    chain: list[int] = []
    current: int | None = dept_id
    while current is not None and current not in chain:
        chain.append(current)
        current = None if current == root else parents.get(current)
    return chain


def count_members(
    people_depts: Iterable[Iterable[int]], parents: dict[int, int], root: int
) -> tuple[int, dict[int, int]]:
    """(people, {department: distinct people in it or below}) from each person's departments."""
    total = 0
    by_dept: dict[int, int] = {}
    for depts in people_depts:
        total += 1
        covered: set[int] = set()
        for dept_id in depts:
            covered.update(ancestors(int(dept_id), parents, root))
        for dept_id in covered:
            by_dept[dept_id] = by_dept.get(dept_id, 0) + 1
    return total, by_dept


def member_counts_store(
    department: Department | int, total: int, by_dept: dict[int, int], now: datetime
) -> None:
    """Store the counts on the department's directory settings (the sync and the count call it)."""
    department_id = department if isinstance(department, int) else department.pk
    DirectorySettings.objects.update_or_create(
        department_id=department_id,
        defaults={
            "member_count": total,
            "dept_member_counts": {str(k): v for k, v in by_dept.items()},
            "members_counted_at": now,
        },
    )


def member_counts(department: Department | int) -> MemberCounts | None:
    """The department's last stored counts, or None when its directory was never counted."""
    department_id = department if isinstance(department, int) else department.pk
    row = (
        DirectorySettings.objects.filter(department_id=department_id)
        .values("member_count", "dept_member_counts", "members_counted_at")
        .first()
    )
    if row is None or row["member_count"] is None:
        return None
    by_dept = {int(k): int(v) for k, v in (row["dept_member_counts"] or {}).items()}
    return MemberCounts(int(row["member_count"]), by_dept, row["members_counted_at"])


def directory_members_count(
    department: Department, *, client: DingTalkClient | None = None
) -> MemberCounts:
    """Walk the department's DingTalk directory and store its member counts (recipients untouched)."""
    root = (
        DirectorySettings.objects.filter(department=department)
        .values_list("root_dept_id", flat=True)
        .first()
        or 1
    )
    own_client = client is None
    active = client or directory_client(department)
    pacer = Pacer(settings.AUDIENCES_SYNC_CALLS_PER_SECOND)
    try:
        parents: dict[int, int] = {}
        order: list[int] = []
        pending = [root]
        while pending:
            dept_id = pending.pop(0)
            order.append(dept_id)
            for child in pacer.call(lambda d=dept_id: active.list_sub_department_ids(d)):  # type: ignore[misc]
                parents[child] = dept_id
                pending.append(child)
        depts_of: dict[str, list[int]] = {}
        for dept_id in order:
            for userid in pacer.call(lambda d=dept_id: active.list_user_ids(d)):  # type: ignore[misc]
                depts_of.setdefault(userid, []).append(dept_id)
    finally:
        if own_client:
            active.close()
    total, by_dept = count_members(depts_of.values(), parents, root)
    now = timezone.now()
    member_counts_store(department, total, by_dept, now)
    return MemberCounts(total, by_dept, now)
