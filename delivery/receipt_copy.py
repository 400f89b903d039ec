"""The receipt report's CSV on PostgreSQL: `COPY (SELECT ...) TO STDOUT`, every cell formatted,
masked and neutralised in SQL (the same rules as receipt_report.receipt_row and
audit.spreadsheets.neutralise_cell), so a million people cost the database one scan and Python
a byte copy, in constant memory. audit.reports uses it for the receipts report's CSV files
(Report.csv_copy); elsewhere, and for XLSX and JSON, the rows go through Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from django.db.models import QuerySet

from audit.pgcopy import copy_csv_stream, local_time_sql, mogrify, named_sql, neutralised_sql
from delivery.models import Delivery, DeliveryState

_INNER = (
    "pk",
    "dingtalk_user_id",
    "recipient__name",
    "recipient__mobile",
    "recipient__erased_at",
    "now_state",
    "sent_at",
    "first_read_at",
    "confirmed_at",
    "reminders_sent",
)
_ALIASES = ("pk", "userid", "name", "mobile", "erased_at", "state", "sent", "read", "conf", "rem")


def _cells(contacts: bool) -> str:
    erased = "t.erased_at IS NOT NULL"
    mobile = f"CASE WHEN {erased} THEN '' ELSE COALESCE(t.mobile, '') END"
    if not contacts:
        # mask_mobile: the first four characters, a dot for each hidden one, the last two.
        mobile = (
            f"CASE WHEN ({mobile}) = '' THEN '' ELSE left(t.mobile, 4) || ' ' || "
            "repeat('•', greatest(length(t.mobile) - 6, 0)) || right(t.mobile, 2) END"
        )
    return ", ".join(
        [
            "t.pk::text",
            neutralised_sql("t.userid"),
            neutralised_sql(f"CASE WHEN {erased} THEN '' ELSE COALESCE(t.name, '') END"),
            neutralised_sql(mobile),
            neutralised_sql("t.state"),
            named_sql({value: str(label) for value, label in DeliveryState.choices}, "t.state"),
            local_time_sql("t.sent"),
            local_time_sql("t.read"),
            local_time_sql("t.conf"),
            "t.rem::text",
        ]
    )


def copy_statement(queryset: QuerySet[Delivery], *, contacts: bool) -> str:
    # Sorted inside, before the cells are formatted: the sort then moves the narrow raw rows
    # rather than three times as many bytes of text. The outer ORDER BY is the guarantee;
    # PostgreSQL sees the subquery's order and does not sort again.
    inner_sql, inner_params = queryset.order_by("pk").values_list(*_INNER).query.sql_with_params()
    select = (
        f"SELECT {_cells(contacts)} FROM ({inner_sql}) "  # noqa: S608 - constants, quoted literals and Django's compiled query
        f"AS t({', '.join(_ALIASES)}) ORDER BY t.pk"
    )
    return f"COPY ({mogrify(select, list(inner_params))}) TO STDOUT WITH (FORMAT csv)"


def receipts_csv_copy(
    queryset: QuerySet[Delivery],
    headers: list[str],
    *,
    contacts: bool,
    on_rows: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """The report's CSV (UTF-8 with a byte-order mark) streamed from COPY; `on_rows(n)` with
    the running row count about every CHUNK_BYTES, and once with the total at the end."""
    yield from copy_csv_stream(
        copy_statement(queryset, contacts=contacts), headers, on_rows=on_rows
    )
