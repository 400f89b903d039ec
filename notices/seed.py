# ruff: noqa: RUF001 - full-width punctuation is correct in Traditional Chinese text
"""The predefined templates: the Observatory's rainstorm warnings and a Water Supplies outage.

Warning codes and names follow hk-domain.md §2 (WRAINA Amber 黃色, WRAINR Red 紅色, WRAINB
Black 黑色). Integrations find a template by `trigger_code`; placeholders are filled from the
warning (`issue_time`) or by staff.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_noop

from notices.models import Classification, MessageKind, RemindWhom, Tier

HKO_RAINSTORM_URL = "https://www.hko.gov.hk/en/wservice/warning/rainstor.htm"
HKO_RAINSTORM_URL_ZH = "https://www.hko.gov.hk/tc/wservice/warning/rainstor.htm"
REPORT_URL = "https://www.1823.gov.hk/"

_RAINSTORM = {
    "WRAINA": (
        "amber",
        "Amber",
        "黃色",
        "Heavy rain has fallen or is expected (over 30 mm an hour) and may continue.",
        "香港廣泛地區已錄得或預料有每小時雨量超過三十毫米的大雨，且可能持續。",
        "Stay alert, avoid low-lying areas and watch for flooding.",
        "請提高警覺，避開低窪地區，留意水浸情況。",
    ),
    "WRAINR": (
        "red",
        "Red",
        "紅色",
        "Heavy rain (over 50 mm an hour) has fallen or is expected and is likely to continue.",
        "香港廣泛地區已錄得或預料有每小時雨量超過五十毫米的豪雨，且很可能持續。",
        "Flooding is likely: stay indoors or take shelter, keep away from streams and slopes.",
        "可能出現水浸：請留在室內或暫避安全地方，遠離河道及斜坡。",
    ),
    "WRAINB": (
        "black",
        "Black",
        "黑色",
        "Very heavy rain (over 70 mm an hour) has fallen or is expected and is likely to continue.",
        "香港廣泛地區已錄得或預料有每小時雨量超過七十毫米的豪雨，且很可能持續。",
        "Serious flooding: stay indoors or in a safe shelter until the rain eases.",
        "嚴重水浸：請留在室內或安全地方，直至大雨減弱。",
    ),
}


# The seeded templates' names, for the catalogue: NoticeTemplate.display_name translates them.
SEEDED_NAMES = (
    gettext_noop("Amber Rainstorm Warning Signal"),
    gettext_noop("Red Rainstorm Warning Signal"),
    gettext_noop("Black Rainstorm Warning Signal"),
    gettext_noop("Rainstorm warning cancelled"),
    gettext_noop("Water supply suspension"),
    gettext_noop("Typhoon Signal No. 8"),
)


def _rainstorm(code: str) -> dict[str, Any]:
    slug, colour_en, colour_zh, what_en, what_zh, do_en, do_zh = _RAINSTORM[code]
    return {
        "code": f"rainstorm-{slug}",
        "name": f"{colour_en} Rainstorm Warning Signal",
        "description": f"Observatory {code}: {colour_en} rainstorm warning issued.",
        "trigger_code": code,
        "tier": Tier.CITYWIDE,
        "kind": MessageKind.ACTION_CARD,
        "title_en": f"{colour_en} Rainstorm Warning Signal",
        "title_zh": f"{colour_zh}暴雨警告信號",
        "body_en": (
            f"**{colour_en} Rainstorm Warning Signal** issued by the Hong Kong Observatory at "
            f"{{issue_time}}.\n\n{what_en}\n\n{do_en}"
        ),
        "body_zh": (
            f"**{colour_zh}暴雨警告信號**已於{{issue_time}}由香港天文台發出。\n\n{what_zh}\n\n{do_zh}"
        ),
        "buttons": [
            {"title_en": "Safety advice", "title_zh": "安全提示", "url": HKO_RAINSTORM_URL},
            {"title_en": "Report flooding", "title_zh": "報告水浸", "url": REPORT_URL},
        ],
        "link_url": "",
        "requires_confirmation": False,
        "remind_after_minutes": None,
        "max_reminders": 0,
        "remind_whom": "",
        "expires_after_minutes": 6 * 60,
        "classification": Classification.UNCLASSIFIED,
        # A Cantonese voice clip of the Chinese text goes with it (notices.voice_clips).
        "voice_from_text": True,
        "is_active": True,
    }


def _typhoon_8() -> dict[str, Any]:
    """No. 8 Gale or Storm Signal. No trigger code: the Observatory's TC8 has four directional
    subtypes (TC8NE...), mapped by a department's warning settings, not by this template."""
    return {
        "code": "typhoon-8",
        "name": "Typhoon Signal No. 8",
        "description": "Observatory WTCSGNL TC8*: No. 8 Gale or Storm Signal issued.",
        "trigger_code": "",
        "tier": Tier.CITYWIDE,
        "kind": MessageKind.MARKDOWN,
        "title_en": "Typhoon Signal No. 8",
        "title_zh": "八號烈風或暴風信號",
        "body_en": (
            "The Hong Kong Observatory issued the **No. 8 Gale or Storm Signal** at "
            "{issue_time}. Stay indoors, keep away from windows and follow official advice."
        ),
        "body_zh": "香港天文台已於{issue_time}發出**八號烈風或暴風信號**。請留在室內，遠離窗戶，並留意政府公布。",
        "buttons": [],
        "link_url": "",
        "requires_confirmation": False,
        "remind_after_minutes": None,
        "max_reminders": 0,
        "remind_whom": "",
        "expires_after_minutes": 12 * 60,
        "classification": Classification.UNCLASSIFIED,
        "voice_from_text": True,
        "is_active": True,
    }


def _rainstorm_cancelled() -> dict[str, Any]:
    return {
        "code": "rainstorm-cancelled",
        "name": "Rainstorm warning cancelled",
        "description": "Observatory WRAIN with actionCode CANCEL.",
        "trigger_code": "WRAIN-CANCEL",
        "tier": Tier.CITYWIDE,
        "kind": MessageKind.TEXT,
        "title_en": "Rainstorm Warning cancelled",
        "title_zh": "暴雨警告信號已取消",
        "body_en": (
            "The Hong Kong Observatory cancelled the rainstorm warning signal at {cancel_time}. "
            "Take care: roads may still be flooded."
        ),
        "body_zh": "香港天文台已於{cancel_time}取消暴雨警告信號。部分道路或仍有水浸，請小心。",
        "buttons": [],
        "link_url": "",
        "requires_confirmation": False,
        "remind_after_minutes": None,
        "max_reminders": 0,
        "remind_whom": "",
        "expires_after_minutes": 3 * 60,
        "classification": Classification.UNCLASSIFIED,
        "is_active": True,
    }


def _water_outage() -> dict[str, Any]:
    return {
        "code": "water-outage",
        "name": "Water supply suspension",
        "description": "Water Supplies Department: planned or emergency water suspension.",
        "trigger_code": "WSD-OUTAGE",
        "tier": Tier.TARGETED,
        "kind": MessageKind.ACTION_CARD,
        "title_en": "Water supply suspension: {area}",
        "title_zh": "暫停供水：{area_zh}",
        "body_en": (
            "Water supply to **{area}** will be suspended from {start} to {end} because of "
            "{reason}. Please store water in advance."
        ),
        "body_zh": "由於{reason_zh}，**{area_zh}**將於{start}至{end}暫停供水。請預先儲水。",
        "buttons": [
            {
                "title_en": "Suspension details",
                "title_zh": "停水詳情",
                "url": "https://www.wsd.gov.hk/en/customer-services/water-suspension/",
            },
            {"title_en": "Report a problem", "title_zh": "報告問題", "url": REPORT_URL},
        ],
        "link_url": "",
        "requires_confirmation": False,
        "remind_after_minutes": 60,
        "max_reminders": 1,
        "remind_whom": RemindWhom.UNREAD,
        "expires_after_minutes": None,
        "classification": Classification.UNCLASSIFIED,
        "is_active": True,
    }


def default_templates(department_code: str) -> list[dict[str, Any]]:
    """Template specs for a department: rainstorm warnings for all, the outage for WSD."""
    specs = [_rainstorm(code) for code in _RAINSTORM]
    specs.append(_rainstorm_cancelled())
    specs.append(_typhoon_8())
    if department_code == "WSD":
        specs.append(_water_outage())
    return specs
