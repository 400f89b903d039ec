"""What a notice sends, as plain data: DingTalk messages per language, their validation and sizes.

The compose page previews unsaved form data with the same functions the services validate with
and the delivery engine sends with (`notice_message`), so what staff see is what goes out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _

from dingtalk import messages as dt
from dingtalk.errors import MessageInvalid
from notices.content_errors import explain
from notices.models import MEDIA_KINDS, Attachment, MessageKind, Notice, RemindWhom, Tier

LANGUAGES = ("en", "zh")
# A stand-in media id so an unsent image/file/voice message can be validated and measured.
PREVIEW_MEDIA_ID = "@preview-media-id"
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]{0,39})\}")


@dataclass
class Content:
    """The editable part of a notice (saved or not)."""

    tier: str = Tier.TARGETED
    kind: str = MessageKind.TEXT
    title_en: str = ""
    title_zh: str = ""
    body_en: str = ""
    body_zh: str = ""
    buttons: list[dict[str, str]] = field(default_factory=list)
    link_url: str = ""
    link_pic_url: str = ""
    attachment: Attachment | None = None
    requires_confirmation: bool = False
    remind_after_minutes: int | None = None
    max_reminders: int = 0
    remind_whom: str = ""
    send_at: datetime | None = None
    expires_at: datetime | None = None

    def title(self, lang: str) -> str:
        return str(getattr(self, f"title_{lang}")).strip()

    def body(self, lang: str) -> str:
        return str(getattr(self, f"body_{lang}")).strip()

    def has_language(self, lang: str) -> bool:
        return bool(self.title(lang) or self.body(lang))

    def languages(self) -> list[str]:
        return [lang for lang in LANGUAGES if self.has_language(lang)]


def content_from_notice(notice: Notice) -> Content:
    return Content(
        tier=notice.tier,
        kind=notice.kind,
        title_en=notice.title_en,
        title_zh=notice.title_zh,
        body_en=notice.body_en,
        body_zh=notice.body_zh,
        buttons=list(notice.buttons or []),
        link_url=notice.link_url,
        link_pic_url=notice.link_pic_url,
        attachment=notice.attachment,
        requires_confirmation=notice.requires_confirmation,
        remind_after_minutes=notice.remind_after_minutes,
        max_reminders=notice.max_reminders,
        remind_whom=notice.remind_whom,
        send_at=notice.send_at,
        expires_at=notice.expires_at,
    )


def build_message(content: Content, lang: str, *, media_id: str | None = None) -> dict[str, Any]:
    """The DingTalk `msg` for one language, not yet validated."""
    title = content.title(lang)
    body = content.body(lang)
    kind = content.kind
    if kind == MessageKind.TEXT:
        text = f"{title}\n{body}" if title and body else (title or body)
        return {"msgtype": "text", "text": {"content": text}}
    if kind == MessageKind.MARKDOWN:
        return {"msgtype": "markdown", "markdown": {"title": title, "text": body}}
    if kind == MessageKind.ACTION_CARD:
        buttons = [
            {
                "title": str(b.get(f"title_{lang}") or "").strip(),
                "action_url": str(b.get("url") or ""),
            }
            for b in content.buttons
        ]
        card = {
            "title": title,
            "markdown": body,
            "btn_orientation": "0",
            "btn_json_list": buttons,
        }
        return {"msgtype": "action_card", "action_card": card}
    if kind == MessageKind.LINK:
        return {
            "msgtype": "link",
            "link": {
                "messageUrl": content.link_url,
                "picUrl": content.link_pic_url,
                "title": title,
                "text": body,
            },
        }
    media = media_id or PREVIEW_MEDIA_ID
    if kind == MessageKind.VOICE:
        duration = content.attachment.duration_s if content.attachment is not None else None
        return {"msgtype": "voice", "voice": {"media_id": media, "duration": str(duration or "")}}
    return {"msgtype": kind, kind: {"media_id": media}}


def notice_message(notice: Notice, lang: str, *, media_id: str | None = None) -> dict[str, Any]:
    """The validated DingTalk `msg` of a notice in `lang` ("en" or "zh"); for the delivery engine.

    Media kinds need the DingTalk media id of the uploaded attachment. Raises MessageInvalid.
    """
    return dt.validate_msg(build_message(content_from_notice(notice), lang, media_id=media_id))


# Map the builder's field paths onto the compose form's fields.
def _form_field(path: str, lang: str) -> str:
    if path.startswith("action_card.btn_json_list"):
        return "buttons"
    if path.endswith((".title", "single_title")):
        return f"title_{lang}"
    if path.endswith(("messageUrl",)):
        return "link_url"
    if path.endswith("picUrl"):
        return "link_pic_url"
    if path.endswith(("duration", "media_id")):
        return "attachment"
    return f"body_{lang}"


@dataclass
class LanguageStats:
    lang: str
    message: dict[str, Any]
    bytes: int
    byte_limit: int
    title_chars: int
    title_limit: int | None
    body_chars: int
    body_limit: int | None
    error: str = ""
    error_field: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "lang": self.lang,
            "message": self.message,
            "bytes": self.bytes,
            "byte_limit": self.byte_limit,
            "title_chars": self.title_chars,
            "title_limit": self.title_limit,
            "body_chars": self.body_chars,
            "body_limit": self.body_limit,
            "error": self.error,
            "error_field": self.error_field,
        }


_LIMITS: dict[str, tuple[int | None, int | None]] = {
    MessageKind.TEXT: (None, dt.MAX_TEXT_CONTENT_CHARS),
    MessageKind.MARKDOWN: (dt.MAX_MARKDOWN_TITLE_CHARS, dt.MAX_MARKDOWN_TEXT_CHARS),
    MessageKind.ACTION_CARD: (dt.MAX_CARD_TITLE_CHARS, dt.MAX_CARD_MARKDOWN_CHARS),
    MessageKind.LINK: (dt.MAX_LINK_TITLE_CHARS, dt.MAX_LINK_TEXT_CHARS),
}


def language_stats(content: Content, lang: str) -> LanguageStats:
    """Size of the language's message against DingTalk's limits, and its first problem if any."""
    message = build_message(content, lang)
    size = len(dt.encode_msg(message).encode("utf-8"))
    title_limit, body_limit = _LIMITS.get(content.kind, (None, None))
    stats = LanguageStats(
        lang=lang,
        message=message,
        bytes=size,
        byte_limit=dt.MAX_MSG_BYTES,
        title_chars=len(content.title(lang)),
        title_limit=title_limit,
        body_chars=len(content.body(lang)),
        body_limit=body_limit,
    )
    try:
        dt.validate_msg(message)
    except MessageInvalid as exc:
        stats.error = explain(exc, lang)
        stats.error_field = _form_field(exc.field, lang)
    return stats


def _kind_label(kind: str) -> str:
    return str(MessageKind(kind).label) if kind in MessageKind.values else kind


def _add(errors: dict[str, list[str]], name: str, message: str) -> None:
    errors.setdefault(name, []).append(message)


def validate_content(content: Content, *, now: datetime | None = None) -> dict[str, list[str]]:
    """Every problem with the content, keyed by form field ('__all__' for the whole notice)."""
    errors: dict[str, list[str]] = {}
    now = now or timezone.now()
    languages = content.languages()
    if content.tier not in Tier.values:
        _add(errors, "tier", _("Choose a tier."))
    if content.kind not in MessageKind.values:
        _add(errors, "kind", _("Choose a message kind."))
        return errors
    if not languages:
        _add(errors, "title_en", _("Write the notice in English, Traditional Chinese or both."))
    if content.tier == Tier.CITYWIDE:
        for lang, label in (("en", _("English")), ("zh", _("Traditional Chinese"))):
            if not content.title(lang):
                _add(
                    errors,
                    f"title_{lang}",
                    _("A citywide notice needs a %(language)s title.") % {"language": label},
                )
            if content.kind not in MEDIA_KINDS and not content.body(lang):
                _add(
                    errors,
                    f"body_{lang}",
                    _("A citywide notice needs a %(language)s text.") % {"language": label},
                )
    if len(content.buttons) > dt.MAX_BUTTONS:
        _add(errors, "buttons", _("At most %(n)d buttons.") % {"n": dt.MAX_BUTTONS})
    if content.kind == MessageKind.ACTION_CARD:
        if not content.buttons:
            _add(errors, "buttons", _("An action card needs at least one button."))
        for i, button in enumerate(content.buttons, start=1):
            if not str(button.get("url") or "").startswith(dt.URL_SCHEMES):
                _add(
                    errors, "buttons", _("Button %(i)d needs a link starting https://.") % {"i": i}
                )
            for lang in languages:
                if not str(button.get(f"title_{lang}") or "").strip():
                    _add(
                        errors,
                        "buttons",
                        _("Button %(i)d needs a title in every language used.") % {"i": i},
                    )
    elif content.buttons:
        _add(errors, "buttons", _("Only an action card has buttons."))
    if content.kind == MessageKind.LINK and not content.link_url:
        _add(errors, "link_url", _("A link message needs the address it opens."))
    if content.kind in MEDIA_KINDS:
        attachment = content.attachment
        if attachment is None:
            _add(errors, "attachment", _("Attach the image, file or voice clip to send."))
        elif attachment.media_type != content.kind:
            _add(
                errors,
                "attachment",
                _("The attachment is a %(type)s, not a %(kind)s.")
                % {"type": _kind_label(attachment.media_type), "kind": _kind_label(content.kind)},
            )
    elif content.attachment is not None:
        _add(errors, "attachment", _("Only image, file and voice messages carry an attachment."))
    if not errors:
        for lang in languages:
            stats = language_stats(content, lang)
            if stats.error:
                _add(errors, stats.error_field, stats.error)
    _validate_options(content, errors, now)
    return errors


def _validate_options(content: Content, errors: dict[str, list[str]], now: datetime) -> None:
    if content.remind_after_minutes is not None or content.max_reminders:
        if not content.remind_after_minutes:
            _add(errors, "remind_after_minutes", _("Say after how many minutes to remind."))
        if not content.max_reminders:
            _add(errors, "max_reminders", _("Say how many reminders at most (1 or more)."))
        if content.remind_whom not in RemindWhom.values:
            _add(errors, "remind_whom", _("Say whom to remind."))
    if content.remind_whom == RemindWhom.UNCONFIRMED and not content.requires_confirmation:
        _add(
            errors,
            "remind_whom",
            _("Reminding those who have not confirmed needs 'requires confirmation'."),
        )
    if content.send_at is not None and content.send_at <= now:
        _add(errors, "send_at", _("The sending time is in the past."))
    if content.expires_at is not None:
        start = content.send_at or now
        if content.expires_at <= start:
            _add(errors, "expires_at", _("The expiry must be after the sending time."))


def placeholders_in(texts: list[str]) -> list[str]:
    """The distinct `{placeholder}` names in `texts`, in order of first appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        for name in PLACEHOLDER.findall(text):
            seen.setdefault(name, None)
    return list(seen)


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
