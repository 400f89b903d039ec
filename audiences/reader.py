"""The one reader of recipient files, for every import path (admin, background job, bulk command).

Limits are checked before anything is parsed: the file's size; for an XLSX file, that it is a
workbook at all, without macros or external links, and each part's uncompressed size and their
total as the zip's directory declares them (Python's zipfile never inflates a part beyond its
declared size, so a lying directory ends in a refused file, not in memory). Rows are then read
from the data itself, never from metadata (an XLSX `<dimension>` can say A1:E2 over 2,500 rows),
and counting stops at the limit.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext as _

from audiences.models import FileFormat
from audiences.validation import ImportFileError, RecipientFile

ZIP_MAGIC = b"PK\x03\x04"
_MACRO_SUFFIXES = (".xlsm", ".xltm", ".xlsb", ".xlam")
_OLD_SUFFIXES = (".xls", ".xlt")
_MB = 1_048_576


@dataclass(frozen=True)
class Limits:
    """What one import may hold; `rows` counts data rows (the header not included)."""

    rows: int
    file_bytes: int
    part_bytes: int
    total_bytes: int
    columns: int

    @classmethod
    def from_settings(cls, *, rows: int | None = None) -> Limits:
        return cls(
            rows=rows or settings.AUDIENCES_IMPORT_MAX_ROWS,
            file_bytes=settings.AUDIENCES_IMPORT_MAX_BYTES,
            part_bytes=settings.AUDIENCES_XLSX_MAX_PART_BYTES,
            total_bytes=settings.AUDIENCES_XLSX_MAX_TOTAL_BYTES,
            columns=settings.AUDIENCES_IMPORT_MAX_COLUMNS,
        )


def file_format_for(file_name: str) -> str:
    """The format a file's name says, or ImportFileError for the kinds we refuse by name."""
    lower = file_name.lower()
    if lower.endswith(_MACRO_SUFFIXES):
        raise ImportFileError(
            _(
                "The file is a macro-enabled or binary workbook (%(name)s), which is not accepted."
                " Save it as an Excel Workbook (.xlsx) or as CSV UTF-8 and upload it again."
            )
            % {"name": file_name[-80:]}
        )
    if lower.endswith(_OLD_SUFFIXES):
        raise ImportFileError(
            _(
                "The file is an old Excel 97-2003 workbook, which is not accepted. Save it as an"
                " Excel Workbook (.xlsx) or as CSV UTF-8 and upload it again."
            )
        )
    return FileFormat.XLSX if lower.endswith(".xlsx") else FileFormat.CSV


def check_size(data: bytes, limits: Limits, *, size: int | None = None) -> None:
    """`size`: the upload's real size when only its first bytes were read."""
    size = max(size or 0, len(data))
    if size > limits.file_bytes:
        raise ImportFileError(
            _("The file is %(size)s MB; the limit is %(limit)s MB. Split it into smaller files.")
            % {"size": round(size / _MB, 1), "limit": limits.file_bytes // _MB}
        )


def inspect_xlsx(data: bytes, limits: Limits) -> int:
    """Refuse an XLSX file before parsing it: not a workbook, macros, external links, too big.

    Returns the total unpacked size its zip directory declares.
    """
    if not data.startswith(ZIP_MAGIC):
        raise ImportFileError(
            _(
                "The file is named .xlsx but is not an Excel workbook (it looks like a text or CSV"
                " file). Name a CSV file .csv, or save the workbook as .xlsx, and upload it again."
            )
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ImportFileError(_("The file is not a readable XLSX workbook.")) from None
    names = [p.filename.lower() for p in parts]
    if any(n.endswith("vbaproject.bin") or "/activex/" in n for n in names):
        raise ImportFileError(
            _(
                "The workbook contains macros or ActiveX controls, which are not accepted."
                " Save it as an Excel Workbook (.xlsx) without macros and upload it again."
            )
        )
    if any(n.startswith("xl/externallinks/") for n in names):
        raise ImportFileError(
            _(
                "The workbook links to other workbooks (external links), which is not accepted."
                " Copy the values in, remove the links and upload it again."
            )
        )
    total = 0
    for part in parts:
        total += part.file_size
        if part.file_size > limits.part_bytes:
            raise ImportFileError(
                _(
                    "The workbook's part %(part)s unpacks to %(size)s MB; the limit is %(limit)s MB."
                    " Split the file or save it as CSV UTF-8."
                )
                % {
                    "part": part.filename[:80],
                    "size": round(part.file_size / _MB, 1),
                    "limit": limits.part_bytes // _MB,
                }
            )
    if total > limits.total_bytes:
        raise ImportFileError(
            _(
                "The workbook unpacks to %(size)s MB; the limit is %(limit)s MB."
                " Split the file or save it as CSV UTF-8."
            )
            % {"size": round(total / _MB, 1), "limit": limits.total_bytes // _MB}
        )
    return total


def check_header_width(header: list[str], limits: Limits, *, capped: bool = False) -> None:
    """`capped`: the header was read only up to one column past the limit (XLSX)."""
    if len(header) > limits.columns and capped:
        raise ImportFileError(
            _("The header row has more than %(limit)s columns; at most %(limit)s are allowed.")
            % {"limit": limits.columns}
        )
    if len(header) > limits.columns:
        raise ImportFileError(
            _("The header row has %(got)s columns; at most %(limit)s are allowed.")
            % {"got": len(header), "limit": limits.columns}
        )


def decode_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            _("Line %(line)s is not UTF-8 text. Save the file as 'CSV UTF-8' and upload it again.")
            % {"line": line}
        ) from None


def _csv_records(data: bytes) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of every record, header first, numbered by the line each record starts on."""
    if data.startswith(ZIP_MAGIC):
        raise ImportFileError(
            _("The file is an Excel workbook, not CSV text. Name it .xlsx and upload it again.")
        )
    reader = csv.reader(io.StringIO(decode_utf8(data), newline=""))
    end = 0
    try:
        for cells in reader:
            # A record's first line: where a person looks for a cell that holds a line break.
            yield end + 1, cells
            end = reader.line_num
    except csv.Error as exc:
        raise ImportFileError(
            _("Line %(line)s cannot be read as CSV: %(error)s")
            % {"line": end + 1, "error": str(exc)[:80]}
        ) from None


def _xlsx_records(data: bytes, limits: Limits) -> Iterator[tuple[int, list[str]]]:
    # openpyxl parses with defusedxml when it is installed (it is), which stops entity-expansion bombs.
    import openpyxl

    inspect_xlsx(data, limits)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            return
        # The sheet's <dimension> is metadata the file's author controls: read every row there is.
        sheet.reset_dimensions()
        for number, values in enumerate(
            sheet.iter_rows(values_only=True, max_col=limits.columns + 1), start=1
        ):
            yield number, ["" if v is None else str(v) for v in values]
        book.close()
    except ImportFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - openpyxl and zipfile raise many types for a bad file
        raise ImportFileError(
            _("The file is not a readable XLSX workbook (%(error)s).")
            % {"error": type(exc).__name__}
        ) from None


def _trimmed(cells: list[str]) -> list[str]:
    """Cells without the empty ones at the end (an XLSX row is as wide as its last written cell)."""
    end = len(cells)
    while end and not cells[end - 1].strip():
        end -= 1
    return cells[:end]


def read_file(
    data: bytes, file_format: str, *, limits: Limits | None = None, stop_after: int | None = None
) -> RecipientFile:
    """Header and data rows (blank rows skipped, line numbers kept), within `limits`.

    `stop_after`: read at most that many data rows and say whether there were more
    (`RecipientFile.more`); a web request uses it to decide on a background job without
    reading the rest.
    """
    limits = limits or Limits.from_settings()
    check_size(data, limits)
    if not data.strip():
        raise ImportFileError(_("The file is empty."))
    xlsx = file_format == FileFormat.XLSX
    records = _xlsx_records(data, limits) if xlsx else _csv_records(data)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for line, cells in records:
        if xlsx and line > 2 * limits.rows + 1:
            # Rows are numbered in the file, and a gap of empty rows costs its author nothing.
            raise ImportFileError(
                _("The sheet has rows below line %(line)s; the limit here is %(limit)s rows.")
                % {"line": 2 * limits.rows + 1, "limit": limits.rows}
            )
        if header is None:
            if not any(cells):
                continue
            header = _trimmed(cells) if xlsx else cells
            check_header_width(header, limits, capped=xlsx)
            continue
        if not (any(c.strip() for c in cells) if xlsx else any(cells)):
            continue  # blank, as csv.reader's empty records (the SQL path skips the same lines)
        if xlsx:
            cells = _trimmed(cells)
            cells += [""] * (len(header) - len(cells))
        if stop_after is not None and len(rows) >= stop_after:
            return RecipientFile(header=header, rows=rows, more=True)
        if len(rows) >= limits.rows:
            raise ImportFileError(
                _("The file has more than %(limit)s rows; the limit here is %(limit)s.")
                % {"limit": limits.rows}
            )
        rows.append((line, cells))
    if header is None:
        raise ImportFileError(_("The file is empty."))
    return RecipientFile(header=header, rows=rows)
