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
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connection, connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.actions import registered_actions
from audit.models import AuditEvent
from audit.spreadsheets import FORMULA_TRIGGERS, neutralise_cell

# Bytes handed to the response at a time: COPY yields one row per read.
CHUNK_BYTES = 256 * 1024
# work_mem while a COPY runs (PostgreSQL's default of 4 MB split a million-person report's
# hash join into 16 batches on disk).
COPY_WORK_MEM = "64MB"
# How often a running COPY reports its row count (a progress bar's update, a heartbeat).
PROGRESS_SECONDS = 1.0

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


# The code points a neutralised cell can start with: a trigger, or a space before one.
_FIRST_CODES = ", ".join(str(ord(c)) for c in (" ", *FORMULA_TRIGGERS))


def neutralised_sql(expression: str) -> str:
    """SQL for a text cell as neutralise_cell leaves it; NULL for empty (printed unquoted)."""
    # Same rule as neutralise_cell: a trigger first, or after leading spaces. ascii() (the
    # first character's code point; 0 for "") rules out almost every cell with an integer
    # comparison. Only a cell that starts with a space or a trigger goes on to the regular
    # expression, which converts the whole text first (the dearest part of a row's cells).
    return (
        f"CASE WHEN ascii({expression}) NOT IN ({_FIRST_CODES}) THEN NULLIF({expression}, '') "
        f"WHEN ({expression}) ~ '^ *{_trigger_class()}' THEN '''' || ({expression}) "
        f"ELSE NULLIF({expression}, '') END"
    )


def json_text_sql(column: str) -> str:
    """SQL for a jsonb column's text as a neutralised cell. Only a bare negative number can
    start with a trigger ("-"; the text of anything else starts with one of {["tfn), so the
    text is made once for every other value instead of for each test of the cell."""
    return (
        f"CASE WHEN jsonb_typeof({column}) = 'number' THEN {neutralised_sql(f'{column}::text')} "
        f"ELSE {column}::text END"
    )


# The bridge cell (audit.bridges): the events between the previous exported row and this one.
BRIDGE_SQL = (
    "CASE WHEN t.sequence - t.prev_sequence > 1 THEN (SELECT string_agg(CASE WHEN "
    "b.content_hash = '' THEN b.sequence::text || '=' || b.hash ELSE b.sequence::text || ':' "
    "|| b.content_hash END, ' ' ORDER BY b.sequence) FROM audit_auditevent b "
    "WHERE b.sequence > t.prev_sequence AND b.sequence < t.sequence) END"
)


def named_sql(names: dict[str, str], expression: str) -> str:
    """SQL for the name in `names` of the code `expression` (the code itself if it has none),
    as a neutralised cell. The names are neutralised here, once, so a row looks its code up
    once. Returned with "%" doubled, ready for the binding of the inner query's parameters."""
    safe = {code: neutralise_cell(name) for code, name in names.items()}
    literal = mogrify("%s", [json.dumps(safe, ensure_ascii=False)])
    return f"COALESCE({literal}::jsonb ->> {expression}, {neutralised_sql(expression)})".replace(
        "%", "%%"
    )


def local_time_sql(column: str) -> str:
    """ISO 8601 as datetime.isoformat() writes it (microseconds only when not zero, then the
    offset), in the session's time zone: copy_csv_stream sets it to the current one.

    One to_char a cell: the local time and its offset formatted apart (AT TIME ZONE twice,
    to_char three times) made a timestamp the dearest cell of a row.
    """
    return f"replace(to_char({column}, 'YYYY-MM-DD\"T\"HH24:MI:SS.USTZH:TZM'), '.000000', '')"


def _select_sql() -> str:
    cells = [
        "t.sequence::text",
        # Built from a timestamp, so it starts with a digit: no formula check (and no triple
        # evaluation of the formatting inside the CASE).
        local_time_sql("t.occurred_at"),
        neutralised_sql("t.actor_label"),
        neutralised_sql("t.actor_department"),
        neutralised_sql("t.department_code"),
        neutralised_sql("t.action"),
        named_sql(registered_actions(), "t.action"),
        neutralised_sql("t.target_type"),
        neutralised_sql("t.target_id"),
        neutralised_sql("t.target_label"),
        json_text_sql("t.data"),
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
    # Only constants, quoted literals ("%" doubled by named_sql, so the binding of the inner
    # query's parameters leaves them alone) and Django's compiled query are interpolated.
    # The previous exported row's sequence beside each row, for the bridge cell.
    rows = (
        f"SELECT t.*, lag(t.sequence) OVER (ORDER BY t.sequence) AS prev_sequence "  # noqa: S608
        f"FROM ({inner_sql}) AS t({', '.join(_ALIASES)})"
    )
    select = f"SELECT {_select_sql()} FROM ({rows}) AS t ORDER BY t.sequence"  # noqa: S608
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


# Returns the session's time zone and work_mem, then sets them for the transaction.
_SETTINGS = (
    "SELECT current_setting('TimeZone'), current_setting('work_mem'), "
    "set_config('TimeZone', %s, true), set_config('work_mem', %s, true)"
)


class _Progress:
    """Reports a COPY's running row count at most every PROGRESS_SECONDS, from a helper thread.

    The COPY holds this thread's connection until its last row, so a callback that writes
    the count (audit.export_jobs.progress_reporter) on it would wait for the COPY, which
    waits for the callback: the export hung at its first report. The helper thread has a
    connection of its own, closed with it.
    """

    def __init__(self, on_rows: Callable[[int], None] | None) -> None:
        self.on_rows = on_rows
        self.pool: ThreadPoolExecutor | None = None
        self.last = time.monotonic()

    def report(self, rows: int) -> None:
        if self.on_rows is None or time.monotonic() - self.last < PROGRESS_SECONDS:
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-progress")
        self.pool.submit(self.on_rows, rows).result()
        self.last = time.monotonic()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.submit(connections.close_all).result()
            self.pool.shutdown()


def copy_csv_stream(
    statement: str, headers: list[str], *, on_rows: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """A header row (UTF-8 with a byte-order mark), then the rows of a COPY ... TO STDOUT
    statement in chunks of about CHUNK_BYTES; `on_rows(n)` with the running row count about
    every PROGRESS_SECONDS while the COPY runs (from another thread: see _Progress), and
    once with the exact total at the end."""
    yield b"\xef\xbb\xbf" + (",".join(headers) + "\n").encode()
    rows = 0
    progress = _Progress(on_rows)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # For this transaction only: the zone local_time_sql formats in, and memory
            # enough for a million-row report's sort and hash joins not to spill to disk in
            # pieces. The settings it replaces come back first (a target list is evaluated
            # in order).
            cursor.execute(_SETTINGS, [timezone.get_current_timezone_name(), COPY_WORK_MEM])
            before = cursor.fetchone()
            with cursor.cursor.copy(statement) as copy:
                parts: list[bytes] = []
                size = 0
                for data in copy:
                    parts.append(bytes(data))
                    size += len(data)
                    rows += 1
                    if size >= CHUNK_BYTES:
                        yield b"".join(parts)
                        parts, size = [], 0
                        progress.report(rows)
                if parts:
                    yield b"".join(parts)
            # The connection's own settings again, for an enclosing transaction that goes on.
            cursor.execute(_SETTINGS, before[:2])
    finally:
        progress.close()
    if on_rows is not None:
        on_rows(rows)
