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
# Known-good HK mobile prefixes (libphonenumber metadata): 9xxx, 6xxx, 5xxx blocks.
MOBILE_BASES = (91000000, 61000000, 51200000)


def mobile_for(i: int) -> str:
    return str(MOBILE_BASES[i % 3] + (i // 3) % 900_000)


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
