"""The DingTalk message of each dispatch: one per language, reminders worded differently.

DingTalk drops the same content to the same person within a day (dingtalk-api.md §2.2), so
every reminder round carries its own opening line and therefore its own fingerprint.

Image, file and voice notices carry their media (uploaded by ``delivery.media.ensure_media``
before any message is built; the stored media id is read here, never uploaded). One message
has one type (§3), and only some types can carry text next to the media, so:

- **image** -> an ``oa`` card: the picture (``body.image``), the title and the start of the
  text (DingTalk shows three lines of ``body.content``), in the recipient's language. Tapping it
  opens the public notice page with the whole text (or, for a notice that needs confirmation,
  the person's own confirmation page). One message, nothing lost.
- **file** -> a ``file`` message and **voice** -> a ``voice`` message: these types carry nothing
  but the media id (and the clip's length), so the text cannot travel with them. The text goes
  in a second message per person, :func:`companion_message` (the same card a text notice gets,
  naming the attachment, with the Confirm button when the notice asks for one). The planner
  sends it as a companion dispatch of each language (``en+t``, ``zh+t``, ``both+t``) whose
  batches mirror the media dispatch's (delivery.services, "Companion cards").
- Reminders (round >= 1) of every media notice are text cards: the media reached the person
  with the first message; a reminder only needs to be read, and worded differently.
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import pgettext_lazy

from common.errors import ApplicationError
from common.i18n import in_message_language
from common.urls import portal_url
from dingtalk import messages as dt
from dingtalk.errors import MessageInvalid
from notices.content import notice_message
from notices.models import COMPANION_KINDS, MEDIA_KINDS, MessageKind, Notice

LANGUAGES = ("en", "zh", "both")
CONFIRM_SALT = "delivery.confirm"
NOTICE_PAGE_SALT = "delivery.notice"
CONFIRM_PLACEHOLDER = "__CONFIRM_URL__"
CONFIRM_PLACEHOLDER_URL = "https://confirm.invalid/" + CONFIRM_PLACEHOLDER
OA_HEAD_BGCOLOR = "FF1F5FA8"
MAX_BODY_BYTES = 1400  # the whole msg must stay under 2,048 bytes of JSON

# What the text card of a file or voice notice says about the media sent beside it.
ATTACHMENT_LINES: dict[str, Promise] = {
    MessageKind.FILE: pgettext_lazy(
        "dingtalk message", "Attached file: %(name)s (sent as a separate message)."
    ),
    MessageKind.VOICE: pgettext_lazy(
        "dingtalk message", "Voice message of %(seconds)s seconds (sent as a separate message)."
    ),
}
# A companion card (notices.models.COMPANION_KINDS) is its own dispatch, whose language is the
# primary's with this suffix ("en+t"; Dispatch.language <= 8).
COMPANION_SUFFIX = "+t"
TAP_TO_CONFIRM = pgettext_lazy("dingtalk message", "Tap to read and confirm.")
CONFIRM_BUTTON = pgettext_lazy("dingtalk message", "Confirm")
NOTICE_TITLE = pgettext_lazy("dingtalk message", "Notice")  # a card without a title

REMINDER_OPENERS: tuple[Promise, ...] = (
    pgettext_lazy("dingtalk message", "Reminder: please read this notice."),
    pgettext_lazy("dingtalk message", "Second reminder: this notice still needs your attention."),
    pgettext_lazy("dingtalk message", "Final reminder: please act on this notice today."),
    pgettext_lazy("dingtalk message", "Please read and confirm this notice as soon as possible."),
)


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
    return in_message_language(language, REMINDER_OPENERS[(round_ - 1) % len(REMINDER_OPENERS)])


def _truncate_bytes(text: str, limit: int) -> str:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode("utf-8", "ignore") + "…"


def build_message(notice: Notice, language: str, round_: int = 0) -> dict[str, Any]:
    """The msg body for one language and round; confirmation links are filled per person.

    Round 0 of a notice without a confirmation button is exactly the message approvers saw in
    the preview (notices.content.notice_message); reminders, confirmation cards, media
    messages and the bilingual organisation-wide message are built here. A media notice needs
    its stored media id (ApplicationError "media_missing" otherwise).
    """
    if round_ == 0 and notice.kind in MEDIA_KINDS:
        return media_message(notice, language)
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
    return _text_card(notice, language, round_)


def _text_card(notice: Notice, language: str, round_: int, extra: str = "") -> dict[str, Any]:
    """The compact markdown card (or Confirm action card) of a notice in one language."""
    title, body = _texts(notice, language)
    opener = _opener(language, round_)
    if round_ > 0:
        body = f"**{opener}** ({round_})\n\n{body}"
    if extra:
        body = f"{body}\n\n{extra}".strip()
    body = _truncate_bytes(body, MAX_BODY_BYTES)
    card_title = (title or opener or in_message_language(language, NOTICE_TITLE))[:60]
    if notice.requires_confirmation:
        button = in_message_language(language, CONFIRM_BUTTON)
        return dt.action_card_single(
            card_title, body or card_title, button, CONFIRM_PLACEHOLDER_URL
        )
    return dt.markdown(card_title, body or card_title)


def stored_media_id(notice: Notice) -> str:
    attachment = notice.attachment
    media_id = attachment.dingtalk_media_id if attachment is not None else ""
    if not media_id:
        raise ApplicationError(
            "The attachment was not uploaded to DingTalk before the message was built.",
            code="media_missing",
        )
    return media_id


def media_message(notice: Notice, language: str) -> dict[str, Any]:
    """Round 0 of an image, file or voice notice (see the module docstring for the choice)."""
    media_id = stored_media_id(notice)
    if notice.kind == MessageKind.FILE:
        return dt.file(media_id)
    if notice.kind == MessageKind.VOICE:
        duration = notice.attachment.duration_s if notice.attachment is not None else None
        if not duration:
            raise ApplicationError("The voice clip has no length.", code="media_invalid")
        return dt.voice(media_id, duration)
    title, body = _texts(notice, language)
    if notice.requires_confirmation:
        body = f"{in_message_language(language, TAP_TO_CONFIRM)}\n{body}"
        url = CONFIRM_PLACEHOLDER_URL
    else:
        url = notice_page_url(notice.pk)
    card_title = (title or in_message_language(language, NOTICE_TITLE))[: dt.MAX_OA_TITLE_CHARS]
    return dt.oa(
        url,
        OA_HEAD_BGCOLOR,
        title=card_title,
        content=_truncate_bytes(body, MAX_BODY_BYTES) or card_title,
        image=media_id,
    )


def has_companion(notice: Notice) -> bool:
    """Whether the notice's text travels in a second message beside its media."""
    return notice.kind in COMPANION_KINDS


def companion_language(language: str) -> str:
    """The dispatch language of the text card sent beside a language's media message."""
    return f"{language}{COMPANION_SUFFIX}"


def is_companion(language: str) -> bool:
    return language.endswith(COMPANION_SUFFIX)


def companion_message(notice: Notice, language: str) -> dict[str, Any] | None:
    """The text that travels beside a file or voice message (None for every other kind).

    The same compact card a text notice gets, plus a line naming the attachment; it carries
    the Confirm button when the notice asks for one (the media message cannot).
    """
    if not has_companion(notice):
        return None
    attachment = notice.attachment
    name = attachment.original_name if attachment is not None else ""
    seconds = attachment.duration_s if attachment is not None else None
    line = in_message_language(
        language, ATTACHMENT_LINES[notice.kind], name=name, seconds=seconds or ""
    )
    return _text_card(notice, language, 0, extra=line)


def confirm_token(delivery_id: int) -> str:
    return signing.dumps({"d": delivery_id}, salt=CONFIRM_SALT, compress=True)


def delivery_from_token(token: str, max_age_s: int = 14 * 86400) -> int | None:
    try:
        data = signing.loads(token, salt=CONFIRM_SALT, max_age=max_age_s)
    except signing.BadSignature:
        return None
    value = data.get("d") if isinstance(data, dict) else None
    return int(value) if isinstance(value, int) else None


def notice_token(notice_id: int) -> str:
    return signing.dumps({"n": notice_id}, salt=NOTICE_PAGE_SALT, compress=True)


def notice_from_token(token: str) -> int | None:
    try:
        data = signing.loads(token, salt=NOTICE_PAGE_SALT)
    except signing.BadSignature:
        return None
    value = data.get("n") if isinstance(data, dict) else None
    return int(value) if isinstance(value, int) else None


def notice_page_url(notice_id: int) -> str:
    """The public page with a notice's whole text (where an image card leads)."""
    path = reverse("delivery:notice-page", args=[notice_token(notice_id)])
    return portal_url(path)


def personalise(message: dict[str, Any], confirm_url: str) -> dict[str, Any]:
    """Replace the confirmation placeholder by one person's signed link."""
    card = message.get("action_card")
    if isinstance(card, dict) and CONFIRM_PLACEHOLDER in str(card.get("single_url", "")):
        return {**message, "action_card": {**card, "single_url": confirm_url}}
    oa = message.get("oa")
    if isinstance(oa, dict) and CONFIRM_PLACEHOLDER in str(oa.get("message_url", "")):
        return {**message, "oa": {**oa, "message_url": confirm_url}}
    return message
