"""Formula-safe spreadsheet cells for recipient exports (reliability.md §4.3).

django-import-export's own escaping strips one leading '=' only; Excel and LibreOffice also run
cells starting with + - @ and those preceded by a tab or carriage return.
"""

from __future__ import annotations

from typing import Any

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralise_cell(value: Any) -> Any:
    """Prefix a text cell that a spreadsheet could execute with an apostrophe; other values pass."""
    if isinstance(value, str) and value.lstrip(" ").startswith(_TRIGGERS):
        return "'" + value
    return value
