"""A simulated organisation directory, generated lazily and deterministically.

Tree: root department 1 (the organisation), the 18 Hong Kong districts below it, and one
"Volunteers" unit below each district. Generated user ``i`` (0 <= i < size) belongs to
department number ``i % 36`` of that list, so membership and paging are arithmetic and a
directory of a million users costs nothing until someone looks at a user.

Userids look like ``hko0000042``; mobiles are ``+852`` followed by 8 digits starting with 5,
6 or 9, unique within a directory. A JSON seed file may add explicit departments and users:
``{"departments": [{"dept_id", "name", "parent_id"}], "users": [{"userid", "name",
"mobile", "dept_id_list", "title"?}]}``. Directory-change events mutate the directory
through an overlay (added, modified and removed users).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT_DEPT_ID = 1
DISTRICTS: tuple[tuple[str, str, str], ...] = (
    ("CW", "Central and Western", "中西區"),
    ("WC", "Wan Chai", "灣仔區"),
    ("EA", "Eastern", "東區"),
    ("SO", "Southern", "南區"),
    ("YT", "Yau Tsim Mong", "油尖旺區"),
    ("SS", "Sham Shui Po", "深水埗區"),
    ("KC", "Kowloon City", "九龍城區"),
    ("WT", "Wong Tai Sin", "黃大仙區"),
    ("KU", "Kwun Tong", "觀塘區"),
    ("TW", "Tsuen Wan", "荃灣區"),
    ("TM", "Tuen Mun", "屯門區"),
    ("YL", "Yuen Long", "元朗區"),
    ("NO", "North", "北區"),
    ("TP", "Tai Po", "大埔區"),
    ("SK", "Sai Kung", "西貢區"),
    ("ST", "Sha Tin", "沙田區"),
    ("KI", "Kwai Tsing", "葵青區"),
    ("IS", "Islands", "離島區"),
)
_SURNAMES = (
    "Chan",
    "Wong",
    "Lee",
    "Cheung",
    "Lau",
    "Ng",
    "Leung",
    "Ho",
    "Tam",
    "Yeung",
    "Lam",
    "Tsang",
    "Chow",
    "Kwok",
    "Mak",
    "Fung",
    "Choi",
    "Yip",
    "Lo",
    "Tang",
)
_GIVEN = (
    "Tai Man",
    "Ka Yan",
    "Wing Sze",
    "Chi Keung",
    "Mei Ling",
    "Siu Ming",
    "Ho Yin",
    "Wai Kit",
    "Hoi Ching",
    "Ka Ho",
    "Yuk Lan",
    "Chun Hei",
    "Pui Shan",
    "Kin Wah",
)
_TITLES = ("Resident", "Volunteer", "Officer", "Shop owner", "Teacher", "Nurse")
_MOBILE_SPAN = 10_000_000
_MOBILE_FIRST = ("5", "6", "9")
# Up to this size membership checks use a set of all generated userids (about 80 bytes each).
_SET_LOOKUP_MAX = 200_000


@dataclass
class Department:
    dept_id: int
    name: str
    parent_id: int
    name_tc: str = ""


@dataclass
class User:
    userid: str
    name: str
    mobile: str
    dept_id_list: list[int]
    title: str = ""
    job_number: str = ""
    active: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def as_api(self, corp_id: str) -> dict[str, Any]:
        """The v2/user/get and v2/user/list shape."""
        data: dict[str, Any] = {
            "userid": self.userid,
            "unionid": hashlib.sha1(f"{corp_id}:{self.userid}".encode()).hexdigest()[:24],  # noqa: S324
            "name": self.name,
            "avatar": "",
            "state_code": "852",
            "mobile": self.mobile[4:] if self.mobile.startswith("+852") else self.mobile,
            "hide_mobile": False,
            "telephone": "",
            "job_number": self.job_number,
            "title": self.title,
            "email": "",
            "org_email": "",
            "work_place": "",
            "remark": "",
            "dept_id_list": list(self.dept_id_list),
            "dept_order": 0,
            "extension": "{}",
            "hired_date": 1577836800000,
            "active": self.active,
            "admin": False,
            "boss": False,
            "leader": False,
            "exclusive_account": False,
        }
        data.update(self.extra)
        return data


class Directory:
    def __init__(self, prefix: str, size: int, seed: int, org_name: str = "Organisation") -> None:
        if size < 0 or size >= 3 * _MOBILE_SPAN:
            raise ValueError("directory size out of range")
        self.prefix = prefix.lower()
        self.size = size
        self.seed = seed
        digest = hashlib.sha256(f"{seed}:{prefix}".encode()).digest()
        # Multiplier coprime with 10**7 (odd and not a multiple of 5) makes i -> mobile a bijection.
        multiplier = int.from_bytes(digest[:4], "big") | 1
        if multiplier % 5 == 0:
            multiplier += 2
        self._mobile_mul = multiplier
        self._mobile_add = int.from_bytes(digest[4:8], "big")
        self.departments: dict[int, Department] = {
            ROOT_DEPT_ID: Department(ROOT_DEPT_ID, org_name, 0)
        }
        self._children: dict[int, list[int]] = {ROOT_DEPT_ID: []}
        self._generated_depts: list[int] = []
        for i, (_code, name, name_tc) in enumerate(DISTRICTS):
            district_id = 100 + i
            unit_id = 200 + i
            self._add_department(Department(district_id, name, ROOT_DEPT_ID, name_tc))
            self._add_department(
                Department(unit_id, f"{name} Volunteers", district_id, f"{name_tc}義工隊")
            )
            self._generated_depts += [district_id, unit_id]
        self._slot = {dept_id: slot for slot, dept_id in enumerate(self._generated_depts)}
        self.removed: set[str] = set()
        self.modified: dict[str, User] = {}
        self.added: dict[str, User] = {}
        self._added_members: dict[int, list[str]] = {}
        self._next_added = size
        self._generated_ids: frozenset[str] | None = None

    def _add_department(self, dept: Department) -> None:
        self.departments[dept.dept_id] = dept
        self._children.setdefault(dept.dept_id, [])
        self._children.setdefault(dept.parent_id, []).append(dept.dept_id)

    def load_seed_file(self, path: str) -> None:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        for raw in data.get("departments", []):
            self._add_department(
                Department(int(raw["dept_id"]), str(raw["name"]), int(raw.get("parent_id", 1)))
            )
        for raw in data.get("users", []):
            self.add_user(
                User(
                    userid=str(raw["userid"]),
                    name=str(raw["name"]),
                    mobile=str(raw["mobile"]),
                    dept_id_list=[int(d) for d in raw.get("dept_id_list", [ROOT_DEPT_ID])],
                    title=str(raw.get("title", "")),
                )
            )

    # -- generated users -------------------------------------------------------------

    def userid_for(self, index: int) -> str:
        return f"{self.prefix}{index:07d}"

    def _index_of(self, userid: str) -> int | None:
        n = len(self.prefix)
        if len(userid) != n + 7 or not userid.startswith(self.prefix):
            return None
        digits = userid[n:]
        if not digits.isdigit():
            return None
        index = int(digits)
        return index if index < self.size else None

    def _generate(self, index: int) -> User:
        h = hashlib.blake2b(f"{self.seed}:{index}".encode(), digest_size=8).digest()
        # (first digit, 7 digits) = (i % 3, bijection(i // 3)) keeps every mobile unique.
        position, first = divmod(index, 3)
        digits = (position * self._mobile_mul + self._mobile_add) % _MOBILE_SPAN
        return User(
            userid=self.userid_for(index),
            name=f"{_SURNAMES[h[0] % len(_SURNAMES)]} {_GIVEN[h[1] % len(_GIVEN)]}",
            mobile=f"+852{_MOBILE_FIRST[first]}{digits:07d}",
            dept_id_list=[self._generated_depts[index % len(self._generated_depts)]],
            title=_TITLES[h[2] % len(_TITLES)],
            job_number=f"{self.prefix.upper()}{index:07d}",
        )

    # -- lookups -----------------------------------------------------------------------

    def partition(self, userids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Split userids into (existing, unknown), keeping order; the send hot path."""
        if self.size <= _SET_LOOKUP_MAX:
            if self._generated_ids is None:
                self._generated_ids = frozenset(self.userid_for(i) for i in range(self.size))
            known, removed, added = self._generated_ids, self.removed, self.added
            if not removed and not added:
                ids = list(userids)
                if known.issuperset(ids):  # the common case, checked at C speed
                    return ids, []
                return [u for u in ids if u in known], [u for u in ids if u not in known]
            existing, unknown = [], []
            for userid in userids:
                if (userid in known or userid in added) and userid not in removed:
                    existing.append(userid)
                else:
                    unknown.append(userid)
            return existing, unknown
        existing, unknown = [], []
        for userid in userids:
            (existing if self.has_user(userid) else unknown).append(userid)
        return existing, unknown

    def has_user(self, userid: str) -> bool:
        if userid in self.removed:
            return False
        return userid in self.added or self._index_of(userid) is not None

    def get_user(self, userid: str) -> User | None:
        if userid in self.removed:
            return None
        if userid in self.modified:
            return self.modified[userid]
        if userid in self.added:
            return self.added[userid]
        index = self._index_of(userid)
        return None if index is None else self._generate(index)

    def user_count(self) -> int:
        return (
            self.size
            - sum(1 for u in self.removed if self._index_of(u) is not None)
            + len([u for u in self.added if u not in self.removed])
        )

    def children(self, dept_id: int) -> list[int]:
        return list(self._children.get(dept_id, []))

    def subtree(self, dept_id: int) -> list[int]:
        result, stack = [], [dept_id]
        while stack:
            current = stack.pop()
            result.append(current)
            stack.extend(reversed(self._children.get(current, [])))
        return result

    def _generated_member_count(self, dept_id: int) -> int:
        slot = self._slot.get(dept_id)
        if slot is None or slot >= self.size:
            return 0
        return (self.size - 1 - slot) // len(self._generated_depts) + 1

    def members(self, dept_id: int) -> Iterator[str]:
        """Userids directly in ``dept_id`` (not sub-departments), in a stable order."""
        slot = self._slot.get(dept_id)
        if slot is not None:
            step = len(self._generated_depts)
            for index in range(slot, self.size, step):
                userid = self.userid_for(index)
                if userid not in self.removed:
                    yield userid
        for userid in self._added_members.get(dept_id, []):
            if userid not in self.removed:
                yield userid

    def member_page(self, dept_id: int, cursor: int, size: int) -> tuple[list[str], int | None]:
        """Cursor paging over ``members``: returns (userids, next_cursor or None)."""
        generated = self._generated_member_count(dept_id)
        added = [u for u in self._added_members.get(dept_id, []) if u not in self.removed]
        total_positions = generated + len(added)
        page: list[str] = []
        position = cursor
        slot = self._slot.get(dept_id, 0)
        step = len(self._generated_depts)
        while position < total_positions and len(page) < size:
            if position < generated:
                userid = self.userid_for(slot + position * step)
                if userid not in self.removed:
                    page.append(userid)
            else:
                page.append(added[position - generated])
            position += 1
        return page, (position if position < total_positions else None)

    def count_members(self, dept_ids: Iterable[int]) -> int:
        """Distinct users in the given departments and all their sub-departments."""
        depts: set[int] = set()
        for dept_id in dept_ids:
            depts.update(self.subtree(dept_id))
        count = sum(self._generated_member_count(d) for d in depts)
        count -= sum(
            1
            for u in self.removed
            if (i := self._index_of(u)) is not None
            and self._generated_depts[i % len(self._generated_depts)] in depts
        )
        extra = {u for d in depts for u in self._added_members.get(d, []) if u not in self.removed}
        return count + len(extra)

    def iter_recipients(self, dept_ids: Iterable[int]) -> Iterator[str]:
        """Distinct userids of departments (with sub-departments), generated lazily."""
        seen_added: set[str] = set()
        depts: list[int] = []
        for dept_id in dept_ids:
            for d in self.subtree(dept_id):
                if d not in depts:
                    depts.append(d)
        for dept_id in depts:
            for userid in self.members(dept_id):
                if userid in self.added:
                    if userid in seen_added:
                        continue
                    seen_added.add(userid)
                yield userid

    # -- mutations (directory-change events) -----------------------------------------------

    def add_user(self, user: User) -> User:
        if self.has_user(user.userid):
            raise ValueError(f"user {user.userid} already exists")
        for dept_id in user.dept_id_list:
            if dept_id not in self.departments:
                raise ValueError(f"department {dept_id} does not exist")
        self.removed.discard(user.userid)
        self.added[user.userid] = user
        for dept_id in user.dept_id_list:
            self._added_members.setdefault(dept_id, []).append(user.userid)
        return user

    def new_user(self, dept_id: int | None = None, **fields: Any) -> User:
        """A fresh user with generated attributes; ``fields`` override them."""
        while self.has_user(self.userid_for(self._next_added)):
            self._next_added += 1
        template = self._generate(self._next_added)
        template.userid = self.userid_for(self._next_added)
        self._next_added += 1
        if dept_id is not None:
            template.dept_id_list = [dept_id]
        for key, value in fields.items():
            setattr(template, key, value)
        return self.add_user(template)

    def modify_user(self, userid: str, **fields: Any) -> User:
        user = self.get_user(userid)
        if user is None:
            raise KeyError(userid)
        for key, value in fields.items():
            if key in ("userid", "dept_id_list"):
                raise ValueError(f"{key} cannot be modified in the simulator")
            setattr(user, key, value)
        if userid in self.added:
            self.added[userid] = user
        else:
            self.modified[userid] = user
        return user

    def remove_user(self, userid: str) -> None:
        if not self.has_user(userid):
            raise KeyError(userid)
        self.removed.add(userid)
        self.modified.pop(userid, None)
