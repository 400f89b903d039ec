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
