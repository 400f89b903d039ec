"""The 18 District Council districts (codes, EAC letters and names from hk-domain.md §1)."""

from __future__ import annotations

from typing import Any, NamedTuple


class DistrictRow(NamedTuple):
    code: str
    eac: str
    name_en: str
    name_zh: str
    region: str
    hko_place: str


HKI, KLN, NT = "HKI", "KLN", "NT"

DISTRICTS: tuple[DistrictRow, ...] = (
    DistrictRow("CW", "A", "Central and Western", "中西區", HKI, "Central & Western District"),
    DistrictRow("WC", "B", "Wan Chai", "灣仔區", HKI, "Wan Chai"),
    DistrictRow("EA", "C", "Eastern", "東區", HKI, "Eastern District"),
    DistrictRow("SO", "D", "Southern", "南區", HKI, "Southern District"),
    DistrictRow("YT", "E", "Yau Tsim Mong", "油尖旺區", KLN, "Yau Tsim Mong"),
    DistrictRow("SS", "F", "Sham Shui Po", "深水埗區", KLN, "Sham Shui Po"),
    DistrictRow("KC", "G", "Kowloon City", "九龍城區", KLN, "Kowloon City"),
    DistrictRow("WT", "H", "Wong Tai Sin", "黃大仙區", KLN, "Wong Tai Sin"),
    DistrictRow("KU", "J", "Kwun Tong", "觀塘區", KLN, "Kwun Tong"),
    DistrictRow("TW", "K", "Tsuen Wan", "荃灣區", NT, "Tsuen Wan"),
    DistrictRow("TM", "L", "Tuen Mun", "屯門區", NT, "Tuen Mun"),
    DistrictRow("YL", "M", "Yuen Long", "元朗區", NT, "Yuen Long"),
    DistrictRow("NO", "N", "North", "北區", NT, "North District"),
    DistrictRow("TP", "P", "Tai Po", "大埔區", NT, "Tai Po"),
    DistrictRow("SK", "Q", "Sai Kung", "西貢區", NT, "Sai Kung"),
    DistrictRow("ST", "R", "Sha Tin", "沙田區", NT, "Sha Tin"),
    DistrictRow("KI", "S", "Kwai Tsing", "葵青區", NT, "Kwai Tsing"),
    DistrictRow("IS", "T", "Islands", "離島區", NT, "Islands District"),
)


def load_districts(district_model: Any) -> None:
    """Create or refresh the 18 reference rows (the data migration and the tests both call it).

    ``district_model`` is the District model, or its historical version inside a migration.
    """
    for row in DISTRICTS:
        district_model.objects.update_or_create(
            code=row.code,
            defaults={
                "eac_letter": row.eac,
                "name_en": row.name_en,
                "name_zh": row.name_zh,
                "region": row.region,
                "hko_place": row.hko_place,
            },
        )
