"""Department-wide sends: when a citywide notice's audience is exactly a set of DingTalk departments.

``asyncsend_v2`` with ``dept_id_list`` reaches every member of each listed department *and of
all its sub-departments* (dingtalk-api.md §2.1), at most 20 departments a call, and one call
reaches at most 5,000 people (more are dropped silently, §2.2). Such a send is only right when
what it reaches is the notice's audience, no more and no less. What the portal knows of the
directory comes from the last directory sync (audiences.sync): each recipient's direct
departments (``Recipient.dingtalk_dept_ids``) and the department tree it walked
(``DirectorySettings.dept_tree``). So:

- only a citywide notice without confirmation links qualifies (every other tier is tracked
  person by person); its audience is the department's subscribed, non-erased recipients;
- the sync must be recent (``DELIVERY_DEPT_WIDE_MAX_SYNC_AGE_S``) and from the current root;
- an *outsider* is a recipient who is not in the audience (unsubscribed, for whatever reason)
  and sits in a DingTalk department. A department is usable only if no outsider sits in it or
  below it. People who left the organisation have no departments (the sync and the
  ``user_leave_org`` event clear them), so they block nothing. An outsider in a department
  missing from the tree (created after the sync) makes the whole answer None;
- erasure blanks a person's departments. A sync after the erasure re-creates a person who is
  still in the directory as a new (subscribed) recipient, so only erasures since the last sync
  leave someone of unknown department: then None. Likewise a non-audience recipient with no
  departments added since the sync;
- every audience member needs a usable department of their own (someone imported without
  departments, or only in departments outside the tree, makes the answer None).

Each member's department then climbs to its highest ancestor whose whole subtree is free of
outsiders and holds at most 5,000 audience members, so a few ids cover the audience; nested
choices are dropped (the parent's send reaches the child), and the rest is packed into calls of
at most 20 departments and 5,000 people. A person in two chosen departments counts in both
(sizes are upper bounds); DingTalk's identical-content rule drops the second copy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.utils import timezone

from accounts.models import Department
from audiences.models import DirectorySettings, Recipient, RecipientChannel, SubscriptionState
from delivery.planning import MAX_DEPTS_PER_CALL
from notices.models import Notice, Tier

MAX_REACH_PER_CALL = 5_000  # dingtalk-api.md §2.2: an internal app's call reaches 5,000 people

# Must stay the citywide audience of delivery.services.audience_recipients (a test checks it).
AUDIENCE = Q(
    subscription_state=SubscriptionState.SUBSCRIBED,
    erased_at__isnull=True,
    channel=RecipientChannel.MEMBER,
)


@dataclass(frozen=True)
class DeptTree:
    """The department tree of the last directory sync."""

    root: int
    parents: dict[int, int]

    @classmethod
    def from_json(cls, data: Any) -> DeptTree | None:
        if not isinstance(data, dict) or "root" not in data:
            return None
        parents = data.get("parents") or {}
        return cls(int(data["root"]), {int(k): int(v) for k, v in parents.items()})

    def knows(self, dept_id: int) -> bool:
        return dept_id == self.root or dept_id in self.parents

    def ancestors(self, dept_id: int) -> Iterator[int]:
        """``dept_id`` and the departments above it up to the root (known departments only)."""
        current: int | None = dept_id
        seen: set[int] = set()
        while current is not None and self.knows(current) and current not in seen:
            seen.add(current)
            yield current
            current = None if current == self.root else self.parents.get(current)

    def covering(self, dept_ids: Iterable[int], chosen: Container[int]) -> int | None:
        """The chosen department whose send reaches someone in ``dept_ids``, if any."""
        for dept_id in dept_ids:
            for ancestor in self.ancestors(int(dept_id)):
                if ancestor in chosen:
                    return ancestor
        return None


@dataclass(frozen=True)
class DeptGroup:
    """One asyncsend_v2 call: at most 20 departments reaching at most 5,000 people."""

    dept_ids: list[int]
    size: int  # audience members reached (an upper bound)


@dataclass(frozen=True)
class DeptWidePlan:
    groups: list[DeptGroup]

    @property
    def dept_ids(self) -> list[int]:
        return [dept_id for group in self.groups for dept_id in group.dept_ids]

    @property
    def size(self) -> int:
        return sum(group.size for group in self.groups)


def load_tree(department: Department | int) -> DeptTree | None:
    """The tree of the department's last sync, if it is from the current root."""
    department_id = department if isinstance(department, int) else department.pk
    row = DirectorySettings.objects.filter(department_id=department_id).first()
    if row is None:
        return None
    tree = DeptTree.from_json(row.dept_tree)
    if tree is None or tree.root != row.root_dept_id:
        return None
    return tree


def batch_assigner(
    department: Department | int, batches: Iterable[tuple[int, list[int]]]
) -> Callable[[list[int]], int | None]:
    """For the snapshot: person's departments -> the department-wide batch that reaches them.

    ``batches`` are (batch id, its dept_ids) pairs. None for someone no batch reaches (they
    joined a department outside the plan since it was made): send to them by user id.
    """
    tree = load_tree(department)
    chosen = {int(dept_id): batch_id for batch_id, dept_ids in batches for dept_id in dept_ids}

    def assign(dept_ids: list[int]) -> int | None:
        if tree is None:
            return None
        dept_id = tree.covering(dept_ids, chosen)
        return None if dept_id is None else chosen[dept_id]

    return assign


def dept_wide_ids(notice: Notice) -> list[int] | None:
    """The DingTalk departments whose dept_id_list send reaches exactly the notice's audience.

    None when the notice does not qualify or the audience does not map exactly (see the module
    docstring). The ids are in call order: ``dept_wide_plan`` groups them into calls.
    """
    plan = dept_wide_plan(notice)
    return plan.dept_ids if plan is not None else None


def dept_wide_plan(
    notice: Notice,
    *,
    now: datetime | None = None,
    max_depts: int = MAX_DEPTS_PER_CALL,
    max_reach: int = MAX_REACH_PER_CALL,
) -> DeptWidePlan | None:
    """The department-wide calls of a citywide notice, or None (database reads only)."""
    if notice.tier != Tier.CITYWIDE or notice.requires_confirmation:
        return None
    row = DirectorySettings.objects.filter(department_id=notice.department_id).first()
    if row is None or row.last_synced_at is None:
        return None
    synced = row.last_synced_at
    max_age = timedelta(seconds=float(settings.DELIVERY_DEPT_WIDE_MAX_SYNC_AGE_S))
    if (now or timezone.now()) - synced > max_age:
        return None
    tree = DeptTree.from_json(row.dept_tree)
    if tree is None or tree.root != row.root_dept_id:
        return None
    # Service Window followers are outside the DingTalk organisation (delivery.channels).
    people = Recipient.objects.filter(
        department_id=notice.department_id, channel=RecipientChannel.MEMBER
    ).order_by()
    if people.filter(erased_at__gte=synced).exists():
        return None  # erased since the sync: where they sit in DingTalk is unknown
    audience = _audience_by_departments(people)
    outsiders = _outsider_departments(people, synced)
    if not audience or outsiders is None:
        return None
    dirty: set[int] = set()
    for dept_id in outsiders:
        if not tree.knows(dept_id):
            return None  # a department the sync did not see: what lies below it is unknown
        dirty.update(tree.ancestors(dept_id))
    direct: dict[int, int] = defaultdict(int)
    base: set[int] = set()
    for dept_ids, members in audience:
        usable = [d for d in dept_ids if tree.knows(d) and d not in dirty]
        if not usable:
            return None  # these members share every department with outsiders, or have none
        base.update(usable)
        for dept_id in usable:
            direct[dept_id] += members
    below: dict[int, int] = defaultdict(int)  # audience members in a department's subtree
    for dept_id, members in direct.items():
        for ancestor in tree.ancestors(dept_id):
            below[ancestor] += members
    chosen: set[int] = set()
    for dept_id in base:
        if below[dept_id] > max_reach:
            return None  # one department already reaches more people than a call may
        best = dept_id
        for ancestor in tree.ancestors(dept_id):
            # Ancestors of a department with an outsider are dirty too, and counts only grow.
            if ancestor in dirty or below[ancestor] > max_reach:
                break
            best = ancestor
        chosen.add(best)
    # A send to a department already reaches its sub-departments.
    chosen = {d for d in chosen if not any(a in chosen for a in tree.ancestors(d) if a != d)}
    return DeptWidePlan(_pack(chosen, below, max_depts=max_depts, max_reach=max_reach))


def _audience_by_departments(people: Any) -> list[tuple[list[int], int]]:
    """(direct departments, how many audience members have exactly those) pairs."""
    rows = people.filter(AUDIENCE).values("dingtalk_dept_ids").annotate(n=Count("pk"))
    return [([int(d) for d in row["dingtalk_dept_ids"] or []], int(row["n"])) for row in rows]


def _outsider_departments(people: Any, synced: datetime) -> set[int] | None:
    """Departments of everyone in DingTalk but outside the audience; None when unknowable."""
    rows = (
        people.filter(erased_at__isnull=True)
        .exclude(AUDIENCE)
        .annotate(recent=ExpressionWrapper(Q(created_at__gt=synced), output_field=BooleanField()))
        .values_list("dingtalk_dept_ids", "recent")
        .distinct()
    )
    departments: set[int] = set()
    for dept_ids, recent in rows:
        if not dept_ids and recent:
            return None  # added since the sync without departments: could sit anywhere
        departments.update(int(d) for d in dept_ids or [])
    return departments


def _pack(
    chosen: set[int], below: dict[int, int], *, max_depts: int, max_reach: int
) -> list[DeptGroup]:
    """First-fit decreasing into calls of at most ``max_depts`` departments and ``max_reach``."""
    groups: list[tuple[list[int], int]] = []
    for dept_id in sorted(chosen, key=lambda d: (-below[d], d)):
        size = below[dept_id]
        for i, (ids, total) in enumerate(groups):
            if len(ids) < max_depts and total + size <= max_reach:
                groups[i] = ([*ids, dept_id], total + size)
                break
        else:
            groups.append(([dept_id], size))
    return [DeptGroup(sorted(ids), total) for ids, total in groups]
