"""Re-walks the hash chain in sequence order, in constant memory, and names the first bad event."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from audit.actions import AuditOwnAction
from audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    content_hash,
    legacy_event_hash,
    link_hash,
)
from audit.models import AuditCheckpoint, AuditEvent
from audit.reasons import Reason, reason_english

CHUNK_SIZE = 5000


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_sequence: int | None = None
    head_sequence: int | None = None
    head_hash: str | None = None
    bad_sequence: int | None = None
    bad_event_id: int | None = None
    # Why it is broken: a code of audit.reasons and its values (worded in the reader's language).
    reason_code: str = ""
    reason_params: dict[str, object] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """The reason in English (the command line, the purge's refusal, logs)."""
        return reason_english(self.reason_code, self.reason_params)

    @property
    def message(self) -> str:
        if self.ok:
            if not self.checked:
                return "The audit trail is empty."
            return (
                f"Audit chain verified: {self.checked} events, #{self.first_sequence} to "
                f"#{self.head_sequence}, head hash {self.head_hash}."
            )
        return f"Audit chain broken at event #{self.bad_sequence} (id {self.bad_event_id}): {self.reason}"


def _rows(*, up_to: int | None, chunk_size: int) -> Iterator[dict[str, Any]]:
    # Keyset pages on the unique sequence: constant memory, short queries, no open cursor.
    columns = ("id", *HASHED_FIELDS, "hash", "content_hash")
    after = 0
    while True:
        page = AuditEvent.objects.filter(sequence__gt=after)
        if up_to is not None:
            page = page.filter(sequence__lte=up_to)
        rows = list(page.order_by("sequence").values(*columns)[:chunk_size])
        if not rows:
            return
        yield from rows
        after = rows[-1]["sequence"]


def _start(first: dict[str, Any]) -> tuple[str, Reason | None]:
    """The hash the first remaining event must follow, or a reason it cannot be trusted."""
    if first["sequence"] == 1:
        return GENESIS_HASH, None
    checkpoint = AuditCheckpoint.objects.filter(sequence=first["sequence"] - 1).first()
    if checkpoint is None:
        return "", ("missing_before", {"sequence": first["sequence"]})
    # The purge that made the checkpoint wrote its values into the chain; a checkpoint
    # inserted behind the chain's back has no such event.
    vouched = AuditEvent.objects.filter(
        action=AuditOwnAction.PURGED,
        sequence__gt=checkpoint.sequence,
        data__checkpoint_sequence=checkpoint.sequence,
        data__checkpoint_hash=checkpoint.hash,
    ).exists()
    if not vouched:
        return "", ("checkpoint_unconfirmed", {"sequence": checkpoint.sequence})
    return checkpoint.hash, None


def chain_verify(
    *,
    up_to: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> ChainReport:
    """Check every event (or those up to sequence `up_to`): sequence, link and content hash.

    `progress(checked)` is called after each `chunk_size` events (the Chain page's bar).
    """
    checked = 0
    first_sequence: int | None = None
    expected_sequence = 0
    expected_prev = ""
    last: dict[str, Any] | None = None
    for row in _rows(up_to=up_to, chunk_size=chunk_size):
        if first_sequence is None:
            first_sequence = row["sequence"]
            expected_sequence = row["sequence"]
            expected_prev, problem = _start(row)
            if problem:
                return _broken(row, checked, problem)
        if row["sequence"] != expected_sequence:
            return _broken(
                row, checked, ("missing", {"expected": expected_sequence, "next": row["sequence"]})
            )
        if row["prev_hash"] != expected_prev:
            return _broken(row, checked, ("prev_hash", {"sequence": expected_sequence - 1}))
        # Events written before the content-hash scheme carry a version 1 hash (audit.chain).
        content = content_hash(row)
        linked = link_hash(row["prev_hash"], row["sequence"], content) == row["hash"]
        if not linked and legacy_event_hash(row) != row["hash"]:
            return _broken(row, checked, ("altered", {}))
        # The stored content hash (what exports carry) must be the content's.
        if row["content_hash"] != (content if linked else ""):
            return _broken(row, checked, ("content_hash", {}))
        checked += 1
        if progress is not None and checked % chunk_size == 0:
            progress(checked)
        expected_sequence += 1
        expected_prev = row["hash"]
        last = row
    return ChainReport(
        ok=True,
        checked=checked,
        first_sequence=first_sequence,
        head_sequence=last["sequence"] if last else None,
        head_hash=last["hash"] if last else None,
    )


def _broken(row: dict[str, Any], checked: int, reason: Reason) -> ChainReport:
    return ChainReport(
        ok=False,
        checked=checked,
        bad_sequence=row["sequence"],
        bad_event_id=row["id"],
        reason_code=reason[0],
        reason_params=reason[1],
    )
