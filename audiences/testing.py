"""Test and benchmark helpers: recipient files built the way departments write them."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from audiences.validation import ALL_COLUMNS

DISTRICT_CODES = (
    "CW",
    "WC",
    "EA",
    "SO",
    "YT",
    "SS",
    "KC",
    "WT",
    "KU",
    "TW",
    "TM",
    "YL",
    "NO",
    "TP",
    "SK",
    "ST",
    "KI",
    "IS",
)
# Three-digit prefixes that libphonenumber's HK metadata lists as mobile: 18 x 100,000 numbers.
MOBILE_PREFIXES = tuple(f"90{d}" for d in range(1, 10)) + tuple(f"92{d}" for d in range(9))


def mobile_for(i: int) -> str:
    return f"{MOBILE_PREFIXES[i % 18]}{(i // 18) % 100_000:05d}"


def recipient_row(i: int, **overrides: str) -> dict[str, str]:
    row = {
        "dingtalk_user_id": f"u{i:07d}",
        "name": f"Person {i}",
        "mobile": mobile_for(i),
        "language": ("en", "zh-hant", "both")[i % 3],
        "district": DISTRICT_CODES[i % 18],
        "function_tag": ("frontline", "logistics", "office")[i % 3],
        "risk_level": ("high", "medium", "low")[i % 3],
        "tags": "",
        "subscription": "subscribed",
    }
    row.update(overrides)
    return row


def csv_bytes(rows: Iterable[dict[str, str]], columns: Sequence[str] = ALL_COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def xlsx_bytes(
    rows: Iterable[dict[str, str]],
    columns: Sequence[str] = ALL_COLUMNS,
    *,
    dimension: str | None = "",
    extra_parts: dict[str, bytes] | None = None,
) -> bytes:
    """A workbook of the rows. `dimension`: "" keeps openpyxl's, None removes the element, any
    other text replaces its ref (a file that lies about its size); `extra_parts` adds zip members
    (a vbaProject.bin, an external link)."""
    import re
    import zipfile

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.worksheets[0]
    sheet.append(list(columns))
    for row in rows:
        sheet.append([row.get(c, "") for c in columns])
    first = io.BytesIO()
    book.save(first)
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(first.getvalue())) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml" and dimension != "":
                replacement = (
                    b"" if dimension is None else f'<dimension ref="{dimension}"/>'.encode()
                )
                data = re.sub(rb"<dimension [^>]*/>", replacement, data)
            target.writestr(item.filename, data)
        for name, data in (extra_parts or {}).items():
            target.writestr(name, data)
    return out.getvalue()
