"""The `bridge` cell of an export row: the chain between the file's previous row and this one.

An export of some of the events (one department's, a date range, an action) skips the events
in between; a reader cannot link a row's prev_hash to the previous row's hash without them.
The bridge lists each skipped event as "sequence:content_hash" (separated by spaces; a version
1 event, hashed before the content-hash scheme, as "sequence=hash"): hashes only, never
another department's content. From the file alone, starting at the first row's prev_hash:

    for each skipped event:  hash = sha256(hash + ":" + sequence + ":" + content_hash)
    for the row:             its prev_hash must be that hash, and
                             its hash = sha256(prev_hash + ":" + sequence + ":" + content_hash)

audit.pgcopy builds the same cell in SQL for CSV on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from audit.models import AuditEvent


def bridge_entry(sequence: int, content_hash: str, hash_: str) -> str:
    return f"{sequence}:{content_hash}" if content_hash else f"{sequence}={hash_}"


def with_bridges(pages: Iterable[list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """The rows of `pages` (in sequence order) with their "bridge" key; one query per page
    that has gaps, streaming the skipped events' hashes (constant memory per row)."""
    previous: int | None = None
    for page in pages:
        if not page:
            continue
        exported = {row["sequence"] for row in page}
        start = page[0]["sequence"] if previous is None else previous
        gaps = page[-1]["sequence"] - start + 1 > len(exported) + (previous is not None)
        skipped: dict[int, list[str]] = {}
        if gaps:
            pending: list[str] = []
            between = (
                AuditEvent.objects.filter(sequence__gt=start, sequence__lt=page[-1]["sequence"])
                .order_by("sequence")
                .values_list("sequence", "content_hash", "hash")
            )
            for sequence, content_hash, hash_ in between.iterator(chunk_size=5000):
                if sequence in exported:
                    skipped[sequence] = pending
                    pending = []
                else:
                    pending.append(bridge_entry(sequence, content_hash, hash_))
            skipped[page[-1]["sequence"]] = pending
        for row in page:
            gap = previous is not None and row["sequence"] != previous + 1
            row["bridge"] = " ".join(skipped.get(row["sequence"], [])) if gap else ""
            previous = row["sequence"]
        yield from page
