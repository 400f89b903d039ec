"""The Observatory's warning summary (dataType=warnsum): fetch both languages and read its entries.

Shape (hk-domain.md §2): an object keyed by warning statement code (WRAIN, WTCSGNL, ...), each
with `code` (the subtype for WRAIN/WFIRE/WTCSGNL), `actionCode` (ISSUE, REISSUE, CANCEL,
EXTEND, UPDATE), `issueTime` and `updateTime` in ISO 8601 with +08:00, `name` and `type`
in the requested language. An empty object means nothing is in force.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import requests
from django.conf import settings


class WarningAction(StrEnum):
    """A warning entry's actionCode."""

    ISSUE = "ISSUE"
    REISSUE = "REISSUE"
    CANCEL = "CANCEL"
    EXTEND = "EXTEND"
    UPDATE = "UPDATE"


# Only these prepare notices; EXTEND and UPDATE leave the warning as it was.
ACTIONS_THAT_TRIGGER = frozenset({WarningAction.ISSUE, WarningAction.REISSUE, WarningAction.CANCEL})


class FeedError(Exception):
    """The feed answered with something we cannot read (not JSON, not an object)."""


@dataclass(frozen=True)
class WarningState:
    statement: str
    code: str
    action: str
    issue_time: dt.datetime
    update_time: dt.datetime | None
    name_en: str
    name_zh: str
    type_en: str
    type_zh: str
    raw: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.code}|{self.issue_time.isoformat()}|{self.action}"


def fetch_warnsum(lang: str, *, session: requests.Session | None = None) -> dict[str, Any]:
    """One language of the summary. Raises requests exceptions (transient) or FeedError."""
    getter = session or requests
    response = getter.get(
        settings.INTEGRATIONS_HKO_WARNSUM_URL,
        params={"dataType": "warnsum", "lang": lang},
        timeout=settings.INTEGRATIONS_HKO_TIMEOUT_SECONDS,
    )
    response.raise_for_status()
    try:
        data = response.json()
    except ValueError as exc:
        raise FeedError(f"warnsum ({lang}) is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FeedError(f"warnsum ({lang}) is not a JSON object.")
    return data


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _text(entry: object, name: str) -> str:
    value = entry.get(name, "") if isinstance(entry, dict) else ""
    return value.strip()[:200] if isinstance(value, str) else ""


def parse_warnsum(english: dict[str, Any], chinese: dict[str, Any]) -> list[WarningState]:
    """Entries with a triggering action, in a stable order; unreadable entries are skipped."""
    states = []
    for statement in sorted(english):
        entry = english[statement]
        if not isinstance(entry, dict):
            continue
        action = entry.get("actionCode")
        code = entry.get("code") or statement
        if not isinstance(action, str) or not isinstance(code, str):
            continue
        # When the last tropical cyclone signal is lowered the subtype itself reads "CANCEL".
        if code == WarningAction.CANCEL:
            code, action = statement, WarningAction.CANCEL.value
        if action not in ACTIONS_THAT_TRIGGER:
            continue
        issue_time = _time(entry.get("issueTime"))
        if issue_time is None:
            continue
        other = chinese.get(statement)
        states.append(
            WarningState(
                statement=statement[:16],
                code=code[:16],
                action=action,
                issue_time=issue_time,
                update_time=_time(entry.get("updateTime")),
                name_en=_text(entry, "name"),
                name_zh=_text(other, "name"),
                type_en=_text(entry, "type"),
                type_zh=_text(other, "type"),
                raw={"en": entry, "tc": other if isinstance(other, dict) else {}},
            )
        )
    return states
