"""Spreadsheet safety for every export: formula neutralising, plus streaming CSV/JSON/XLSX writers.

Any app that writes a file a person may open in Excel or LibreOffice should pass every cell
through `neutralise_cell` (OWASP ASVS 1.2.10; django-import-export's own escaping only
strips a leading "=").
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

# What makes a spreadsheet treat a cell as a formula (or split it into one): = + - @, tab and
# carriage return, and their full-width forms, which some locales convert on input.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_TRIGGER_SET = frozenset(FORMULA_TRIGGERS)

# Excel's row limit is 1,048,576; a larger export continues on a new sheet.
XLSX_ROWS_PER_SHEET = 1_000_000


def neutralise_cell(value: Any) -> Any:
    """Return `value` safe to open in a spreadsheet: text that could start a formula gets a
    leading apostrophe, so it is shown as text. Numbers, booleans and None pass unchanged."""
    # Checked on every cell of million-row exports, so the common case is one set lookup.
    if value.__class__ is not str or not value:
        return value
    first = value[0]
    if first in _TRIGGER_SET or (first == " " and value.lstrip(" ")[:1] in _TRIGGER_SET):
        return "'" + value
    return value


def neutralise_row(values: Iterable[Any]) -> list[Any]:
    return [neutralise_cell(v) for v in values]


class _Line:
    """A file-like target for csv.writer that hands back what was written."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def write(self, text: str) -> int:
        return self.buffer.write(text)

    def take(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text


def csv_chunks(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    rows_per_chunk: int = 2000,
    neutralised: bool = False,
) -> Iterator[bytes]:
    """RFC 4180 CSV in UTF-8 with a byte-order mark (so Excel reads Chinese correctly).

    Pass neutralised=True only for rows that already went through neutralise_cell.
    """
    line = _Line()
    writer = csv.writer(line, lineterminator="\r\n")
    writer.writerow(neutralise_row(headers))
    yield b"\xef\xbb\xbf" + line.take().encode()
    pending = 0
    for row in rows:
        writer.writerow(row if neutralised else neutralise_row(row))
        pending += 1
        if pending >= rows_per_chunk:
            yield line.take().encode()
            pending = 0
    rest = line.take()
    if rest:
        yield rest.encode()


def json_chunks(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    rows_per_chunk: int = 2000,
    neutralised: bool = False,
) -> Iterator[bytes]:
    """A JSON array of objects keyed by the headers, written as it is read."""
    keys = list(headers)
    parts: list[str] = ["["]
    first = True
    for row in rows:
        cells = row if neutralised else neutralise_row(row)
        obj = json.dumps(dict(zip(keys, cells, strict=True)), ensure_ascii=False)
        parts.append(("\n" if first else ",\n") + obj)
        first = False
        if len(parts) >= rows_per_chunk:
            yield "".join(parts).encode()
            parts = []
    parts.append("\n]\n")
    yield "".join(parts).encode()


def _xlsx_cell(value: Any) -> Any:
    value = neutralise_cell(value)
    if isinstance(value, str):
        # openpyxl refuses control characters that XML 1.0 cannot carry.
        return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    return value


def write_xlsx(
    path: Path, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str = "Export"
) -> int:
    """Write an XLSX file in openpyxl's write-only mode (rows go to disk, not memory).

    Returns the number of data rows written.
    """
    workbook = Workbook(write_only=True)
    header = [_xlsx_cell(h) for h in headers]
    sheet = None
    on_sheet = 0
    written = 0
    for row in rows:
        if sheet is None or on_sheet >= XLSX_ROWS_PER_SHEET:
            sheet = workbook.create_sheet(f"{title[:25]} {len(workbook.worksheets) + 1}")
            sheet.append(header)
            on_sheet = 0
        sheet.append([_xlsx_cell(v) for v in row])
        on_sheet += 1
        written += 1
    if sheet is None:
        workbook.create_sheet(f"{title[:25]} 1").append(header)
    workbook.save(str(path))
    return written
