"""The CSV export on PostgreSQL: `COPY (SELECT ...) TO STDOUT` with every cell formatted and
neutralised in SQL, so a million events cost the database a scan and Python a byte copy.

The rows are the same as the Python path's (audit.resources.AuditEventResource through
audit.spreadsheets.csv_chunks; a test compares both, cell by cell): the same columns, times
in ISO 8601 in the current time zone with its offset, the registered action names, jsonb's
text for the data, and a leading apostrophe on any text cell that a spreadsheet would read as
a formula (audit.spreadsheets.FORMULA_TRIGGERS). Two differences a CSV reader does not see:
lines end in LF (COPY's only choice; the Python path writes CRLF) and quoting follows
PostgreSQL's rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from audit.actions import registered_actions
from audit.models import AuditEvent
from audit.spreadsheets import FORMULA_TRIGGERS

# Bytes handed to the response at a time: COPY yields one row per read.
CHUNK_BYTES = 256 * 1024

# The inner query's columns, in this order, named t.<name> in the outer SELECT.
_INNER = (
    "sequence",
    "occurred_at",
    "actor_label",
    "actor_department",
    "department__code",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "data",
    "request_id",
    "ip",
    "otp_verified",
    "prev_hash",
    "hash",
    "content_hash",
)
# Column aliases of the inner query: the same names with Django's "__" lookups flattened.
_ALIASES = tuple(name.replace("__", "_") for name in _INNER)


def _trigger_class() -> str:
    """A regex bracket expression of the formula triggers (the full-width forms included)."""
    escaped = {
        "-": r"\-",
        "\\": r"\\",
        "]": r"\]",
        "^": r"\^",
        "\t": r"\t",
        "\r": r"\r",
        "\n": r"\n",
    }
    return "[" + "".join(escaped.get(c, c) for c in FORMULA_TRIGGERS) + "]"


def neutralised_sql(expression: str) -> str:
    """SQL for a text cell as neutralise_cell leaves it; NULL for empty (printed unquoted)."""
    # Same rule as neutralise_cell: a trigger first, or after leading spaces.
    return (
        f"CASE WHEN ({expression}) ~ '^ *{_trigger_class()}' "
        f"THEN '''' || ({expression}) ELSE NULLIF({expression}, '') END"
    )


def local_time_sql(column: str, zone: str) -> str:
    """ISO 8601 as datetime.isoformat() writes it: microseconds only when not zero, then the offset."""
    local = f"({column} AT TIME ZONE {zone})"
    offset = f"({local} - ({column} AT TIME ZONE 'UTC'))"
    return (
        f"to_char({local}, 'YYYY-MM-DD\"T\"HH24:MI:SS') "
        f"|| CASE WHEN extract(microseconds FROM {local})::bigint %% 1000000 = 0 THEN '' "
        f"ELSE '.' || to_char({local}, 'US') END "
        f"|| CASE WHEN {offset} < interval '0' THEN '-' || to_char(-{offset}, 'HH24:MI') "
        f"ELSE '+' || to_char({offset}, 'HH24:MI') END"
    )


# The bridge cell (audit.bridges): the events between the previous exported row and this one.
BRIDGE_SQL = (
    "CASE WHEN t.sequence - t.prev_sequence > 1 THEN (SELECT string_agg(CASE WHEN "
    "b.content_hash = '' THEN b.sequence::text || '=' || b.hash ELSE b.sequence::text || ':' "
    "|| b.content_hash END, ' ' ORDER BY b.sequence) FROM audit_auditevent b "
    "WHERE b.sequence > t.prev_sequence AND b.sequence < t.sequence) END"
)


def _select_sql(names_param: str, zone_param: str) -> str:
    cells = [
        "t.sequence::text",
        # Built from a timestamp, so it starts with a digit: no formula check (and no triple
        # evaluation of the formatting inside the CASE).
        local_time_sql("t.occurred_at", zone_param),
        neutralised_sql("t.actor_label"),
        neutralised_sql("t.actor_department"),
        neutralised_sql("t.department_code"),
        neutralised_sql("t.action"),
        neutralised_sql(f"COALESCE({names_param}::jsonb ->> t.action, t.action)"),
        neutralised_sql("t.target_type"),
        neutralised_sql("t.target_id"),
        neutralised_sql("t.target_label"),
        neutralised_sql("t.data::text"),
        "t.request_id::text",
        "host(t.ip)",
        "CASE WHEN t.otp_verified THEN 'True' ELSE 'False' END",
        neutralised_sql("t.prev_hash"),
        neutralised_sql("t.hash"),
        "NULLIF(t.content_hash, '')",
        BRIDGE_SQL,
    ]
    return ", ".join(cells)


def mogrify(sql: str, params: list[Any]) -> str:
    """`sql` with `params` bound client-side by psycopg (quoted and escaped as literals)."""
    with connection.cursor() as cursor:
        raw = cursor.cursor
        if hasattr(raw, "mogrify"):
            return str(raw.mogrify(sql, params))
    import psycopg

    return psycopg.ClientCursor(connection.connection).mogrify(sql, params)


def copy_statement(queryset: QuerySet[AuditEvent]) -> str:
    """The COPY statement for `queryset` in sequence order, parameters bound client-side."""
    inner_sql, inner_params = queryset.order_by().values_list(*_INNER).query.sql_with_params()
    # The outer values become quoted literals first ("%" doubled, so the second binding,
    # of the inner query's parameters, leaves them alone).
    names = mogrify("%s", [json.dumps(registered_actions(), ensure_ascii=False)])
    zone = mogrify("%s", [timezone.get_current_timezone_name()])
    outer = _select_sql(names.replace("%", "%%"), zone.replace("%", "%%"))
    # Only constants, quoted literals and Django's compiled query are interpolated.
    # The previous exported row's sequence beside each row, for the bridge cell.
    rows = (
        f"SELECT t.*, lag(t.sequence) OVER (ORDER BY t.sequence) AS prev_sequence "  # noqa: S608
        f"FROM ({inner_sql}) AS t({', '.join(_ALIASES)})"
    )
    select = f"SELECT {outer} FROM ({rows}) AS t ORDER BY t.sequence"  # noqa: S608
    return f"COPY ({mogrify(select, list(inner_params))}) TO STDOUT WITH (FORMAT csv)"


def csv_copy_chunks(
    queryset: QuerySet[AuditEvent],
    headers: list[str],
    *,
    on_rows: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """The CSV file of `queryset` (UTF-8 with a byte-order mark), streamed from COPY.

    `on_rows(n)` is called with the running row count about every CHUNK_BYTES, and once with
    the exact total at the end.
    """
    yield from copy_csv_stream(copy_statement(queryset), headers, on_rows=on_rows)


def copy_csv_stream(
    statement: str, headers: list[str], *, on_rows: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """A header row (UTF-8 with a byte-order mark), then the rows of a COPY ... TO STDOUT
    statement in chunks of about CHUNK_BYTES; `on_rows(n)` with the running row count at each
    chunk, and once with the exact total at the end."""
    yield b"\xef\xbb\xbf" + (",".join(headers) + "\n").encode()
    rows = 0
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        parts: list[bytes] = []
        size = 0
        for data in copy:
            parts.append(bytes(data))
            size += len(data)
            rows += 1
            if size >= CHUNK_BYTES:
                yield b"".join(parts)
                parts, size = [], 0
                if on_rows is not None:
                    on_rows(rows)
        if parts:
            yield b"".join(parts)
    if on_rows is not None:
        on_rows(rows)
