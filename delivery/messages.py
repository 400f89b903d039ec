"""The DingTalk message of each dispatch: one per language, reminders worded differently.

DingTalk drops the same content to the same person within a day (dingtalk-api.md §2.2), so
every reminder round carries its own opening line and therefore its own fingerprint.
"""

from __future__ import annotations

from typing import Any

from django.core import signing

from dingtalk import messages as dt
from dingtalk.errors import MessageInvalid
from notices.content import notice_message
from notices.models import MEDIA_KINDS, Notice

LANGUAGES = ("en", "zh", "both")
CONFIRM_SALT = "delivery.confirm"
CONFIRM_PLACEHOLDER = "__CONFIRM_URL__"
MAX_BODY_BYTES = 1400  # the whole msg must stay under 2,048 bytes of JSON

REMINDER_OPENERS: dict[str, tuple[str, ...]] = {
    "en": (
        "Reminder: please read this notice.",
        "Second reminder: this notice still needs your attention.",
        "Final reminder: please act on this notice today.",
        "Please read and confirm this notice as soon as possible.",
    ),
    "zh": (
        "提示 - 請閱讀此通知。",
        "第二次提示 - 此通知仍需要您處理。",
        "最後提示 - 請於今日內處理此通知。",
        "請盡快閱讀並確認此通知。",
    ),
}


def recipient_language(preference: str, notice: Notice | None = None) -> str:
    """Recipient preference (en, zh-hant, both) -> the approved message they get (en or zh).

    People who read both get the Chinese message when there is one; a notice written in one
    language only goes out in that language to everyone.
    """
    has_en = notice is None or bool(notice.title_en.strip() or notice.body_en.strip())
    has_zh = notice is None or bool(notice.title_zh.strip() or notice.body_zh.strip())
    wanted = {"en": "en", "zh-hant": "zh"}.get(preference, "zh")
    if wanted == "en" and not has_en:
        return "zh"
    if wanted == "zh" and not has_zh:
        return "en"
    return wanted


def _texts(notice: Notice, language: str) -> tuple[str, str]:
    en = (notice.title_en.strip(), notice.body_en.strip())
    zh = (notice.title_zh.strip(), notice.body_zh.strip())
    if language == "en" and any(en):
        return en
    if language == "zh" and any(zh):
        return zh
    if any(en) and any(zh):
        return f"{en[0]} {zh[0]}".strip(), f"{en[1]}\n\n{zh[1]}".strip()
    return en if any(en) else zh


def _opener(language: str, round_: int) -> str:
    if round_ <= 0:
        return ""
    if language == "both":
        en = REMINDER_OPENERS["en"][(round_ - 1) % len(REMINDER_OPENERS["en"])]
        zh = REMINDER_OPENERS["zh"][(round_ - 1) % len(REMINDER_OPENERS["zh"])]
        return f"{en} {zh}"
    openers = REMINDER_OPENERS[language]
    return openers[(round_ - 1) % len(openers)]


def _truncate_bytes(text: str, limit: int) -> str:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode("utf-8", "ignore") + "…"


def build_message(notice: Notice, language: str, round_: int = 0) -> dict[str, Any]:
    """The msg body for one language and round; confirmation links are filled per person.

    Round 0 of a notice without a confirmation button is exactly the message approvers saw in
    the preview (notices.content.notice_message); reminders, confirmation cards and the
    bilingual organisation-wide message are built here.
    """
    if (
        round_ == 0
        and not notice.requires_confirmation
        and language in ("en", "zh")
        and notice.kind not in MEDIA_KINDS
    ):
        try:
            return notice_message(notice, language)
        except MessageInvalid:
            pass  # the approved content did not fit; the compact card below does
    title, body = _texts(notice, language)
    opener = _opener(language, round_)
    if round_ > 0:
        body = f"**{opener}** ({round_})\n\n{body}"
    body = _truncate_bytes(body, MAX_BODY_BYTES)
    card_title = (title or opener or "Notice")[:60]
    if notice.requires_confirmation:
        button = {"en": "Confirm", "zh": "確認"}.get(language, "Confirm 確認")
        return dt.action_card_single(
            card_title, body or card_title, button, "https://confirm.invalid/" + CONFIRM_PLACEHOLDER
        )
    return dt.markdown(card_title, body or card_title)


def confirm_token(delivery_id: int) -> str:
    return signing.dumps({"d": delivery_id}, salt=CONFIRM_SALT, compress=True)


def delivery_from_token(token: str, max_age_s: int = 14 * 86400) -> int | None:
    try:
        data = signing.loads(token, salt=CONFIRM_SALT, max_age=max_age_s)
    except signing.BadSignature:
        return None
    value = data.get("d") if isinstance(data, dict) else None
    return int(value) if isinstance(value, int) else None


def personalise(message: dict[str, Any], confirm_url: str) -> dict[str, Any]:
    """Replace the confirmation placeholder by one person's signed link."""
    card = message.get("action_card")
    if not isinstance(card, dict) or CONFIRM_PLACEHOLDER not in str(card.get("single_url", "")):
        return message
    return {**message, "action_card": {**card, "single_url": confirm_url}}
