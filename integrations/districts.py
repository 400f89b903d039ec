"""CAP areas to the 18 districts, where an area names one (by code, English or Chinese name)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from audiences.models import District
from integrations.cap import CapArea

# geocode valueNames that carry our two-letter district code.
DISTRICT_GEOCODE_NAMES = frozenset({"hk-district", "district", "hasc"})


def _normalise(text: str) -> str:
    text = text.strip().lower().replace("&", "and")
    text = re.sub(r"\s+district$", "", text)
    text = re.sub(r"\s+", " ", text)
    return text.removesuffix("區").removesuffix("区")


def _lookup() -> dict[str, District]:
    table: dict[str, District] = {}
    for district in District.objects.all():
        for name in (district.name_en, district.name_zh, district.hko_place):
            table[_normalise(name)] = district
        table[district.code.lower()] = district
        table[f"hk-{district.code.lower()}"] = district
    return table


def districts_for_areas(areas: Iterable[CapArea]) -> list[District]:
    """Districts named by the areas, in the districts' own order; unknown areas are skipped."""
    table = _lookup()
    found: dict[str, District] = {}
    for area in areas:
        candidates = [area.description, *re.split(r"[,\uff0c\u3001;/]", area.description)]
        candidates += [
            value for name, value in area.geocodes if name.strip().lower() in DISTRICT_GEOCODE_NAMES
        ]
        for candidate in candidates:
            district = table.get(_normalise(candidate))
            if district is not None:
                found[district.code] = district
    return sorted(found.values(), key=lambda d: d.eac_letter)
