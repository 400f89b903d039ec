"""The chain proof of an export: what an auditor needs to check its rows with no database.

An export of one department's events has gaps: each row's prev_hash is the hash of an event
(often another department's) that is not in the file. The proof fills them. It is JSON Lines:

- line 1, the rule and the range:
  ``{"chain_rule": ..., "first_sequence": a, "last_sequence": b, "head_sequence": h}``;
- then one line for EVERY event from a to b, in sequence order:
  ``{"sequence", "prev_hash", "content_hash", "hash"}`` and, for the events the auditor may
  export that match the filters, ``"content"``: the exact canonical text whose SHA-256 is
  content_hash (other departments' events show only their hashes, never their content).
  Events written before the content-hash scheme carry ``"scheme": 1`` and, for the reader's
  own, ``"content"`` is the canonical text of every hashed column (hash = SHA-256 of it).

Checking it (README "Audit trail", script there): every line's hash follows from its
prev_hash, sequence and content_hash; each line's prev_hash is the previous line's hash; each
``content`` hashes to its content_hash; and every row of the export (sequence, hash) appears
in the proof. The head hash on the Chain page (and the daily anchor) ties the proof to the
database's chain. Reads in keyset pages: constant memory however long the range.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Max, Min

from accounts import permissions as perms
from audit.actions import AuditOwnAction
from audit.chain import HASHED_FIELDS, canonical_bytes, event_hash, link_hash
from audit.models import AuditEvent
from audit.selectors import EventFilters, event_list_for_user, events_filter
from audit.services import audit_record, chain_head
from common.errors import ApplicationError

CHUNK = 5000
CHAIN_RULE = (
    "content_hash = sha256(content); hash = sha256(prev_hash + ':' + str(sequence) + ':' + "
    "content_hash); prev_hash = the previous line's hash. Scheme 1 lines: hash = sha256(content)."
)


def _line(row: dict[str, Any], own: bool) -> str:
    if event_hash(row) == row["hash"]:
        content = canonical_bytes(row)
        item: dict[str, Any] = {
            "sequence": row["sequence"],
            "prev_hash": row["prev_hash"],
            "content_hash": hashlib.sha256(content).hexdigest(),
            "hash": row["hash"],
        }
    else:  # version 1 (or altered: the check of the proof will say so)
        content = canonical_bytes(row, HASHED_FIELDS)
        item = {
            "sequence": row["sequence"],
            "prev_hash": row["prev_hash"],
            "scheme": 1,
            "hash": row["hash"],
        }
    if own:
        item["content"] = content.decode()
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"


def proof_lines(*, actor: User, filters: EventFilters) -> Iterator[str]:
    """The proof of the export these filters give (Permission: EXPORT_AUDIT; audited)."""
    if not perms.departments_with_perm(actor, perms.EXPORT_AUDIT).exists():
        raise ApplicationError("You may not export the audit trail.", code="forbidden")
    head, _hash = chain_head()
    own = events_filter(event_list_for_user(user=actor, perm=perms.EXPORT_AUDIT), filters).filter(
        sequence__lte=head
    )
    bounds = own.aggregate(first=Min("sequence"), last=Max("sequence"))
    first, last = bounds["first"], bounds["last"]
    departments = perms.departments_with_perm(actor, perms.EXPORT_AUDIT)
    if filters.department:
        departments = departments.filter(code=filters.department)
    only = list(departments[:2])
    audit_record(
        actor=actor,
        action=AuditOwnAction.EXPORTED,
        department=only[0] if len(only) == 1 else None,
        data={"format": "proof", "filters": filters.as_dict(), "first": first, "last": last},
    )
    return _lines(own, first, last, head)


def _lines(own_events: Any, first: int | None, last: int | None, head: int) -> Iterator[str]:
    header = {
        "chain_rule": CHAIN_RULE,
        "first_sequence": first,
        "last_sequence": last,
        "head_sequence": head,
    }
    yield json.dumps(header, ensure_ascii=False) + "\n"
    if first is None or last is None:
        return
    columns = ("id", *HASHED_FIELDS, "hash")
    after = first - 1
    while after < last:
        rows = list(
            AuditEvent.objects.filter(sequence__gt=after, sequence__lte=last)
            .order_by("sequence")
            .values(*columns)[:CHUNK]
        )
        if not rows:
            return
        mine = set(
            own_events.filter(
                sequence__gte=rows[0]["sequence"], sequence__lte=rows[-1]["sequence"]
            ).values_list("sequence", flat=True)
        )
        for row in rows:
            yield _line(row, row["sequence"] in mine)
        after = rows[-1]["sequence"]


def proof_check(lines: Iterator[str]) -> tuple[bool, str]:
    """The README's check, for the tests: (ok, the first problem)."""
    header = json.loads(next(lines))
    previous: str | None = None
    for text in lines:
        item = json.loads(text)
        if previous is not None and item["prev_hash"] != previous:
            return False, f"#{item['sequence']}: prev_hash is not the previous line's hash"
        content = item.get("content")
        if item.get("scheme") == 1:
            if content is not None and hashlib.sha256(content.encode()).hexdigest() != item["hash"]:
                return False, f"#{item['sequence']}: content does not match its hash"
        else:
            if content is not None and (
                hashlib.sha256(content.encode()).hexdigest() != item["content_hash"]
            ):
                return False, f"#{item['sequence']}: content does not match its content_hash"
            expected = link_hash(item["prev_hash"], item["sequence"], item["content_hash"])
            if expected != item["hash"]:
                return False, f"#{item['sequence']}: hash does not follow from its link"
        previous = item["hash"]
    return True, f"{header['first_sequence']}..{header['last_sequence']} verified"
