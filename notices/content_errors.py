"""DingTalk's refusal of a message, explained per form field and language in plain words.

dingtalk.messages names the wire field ("action_card.markdown: is 1279 characters long, the
limit is 1000"); a PR officer needs "The Chinese text is 1,279 characters; DingTalk allows
1,000." Numbers are grouped in the reader's locale.
"""

from __future__ import annotations

import re

from django.utils.formats import number_format
from django.utils.translation import gettext as _

from dingtalk.errors import MessageInvalid
from dingtalk.messages import MEDIA_TYPES
from notices.models import MessageKind

_BUTTON = re.compile(r"btn_json_list\[(\d+)\]\.(title|action_url)$")
_TITLE_FIELDS = ("markdown.title", "action_card.title", "link.title", "action_card.single_title")
_TEXT_FIELDS = ("markdown.text", "action_card.markdown", "link.text")


def language_name(lang: str) -> str:
    return _("English") if lang == "en" else _("Chinese")


def _figures(exc: MessageInvalid, lang: str) -> dict[str, str]:
    return {
        "language": language_name(lang),
        "length": number_format(exc.length or 0, force_grouping=True),
        "limit": number_format(exc.limit or 0, force_grouping=True),
    }


def _button(exc: MessageInvalid, lang: str, index: int, part: str) -> str:
    args = {**_figures(exc, lang), "i": str(index + 1)}
    if part == "title":
        if exc.code == "too_long":
            return (
                _(
                    "Button %(i)s's %(language)s title is %(length)s characters; DingTalk allows %(limit)s."
                )
                % args
            )
        return _("Button %(i)s needs a %(language)s title.") % args
    if exc.code == "too_long":
        return _("Button %(i)s's link is %(length)s characters; DingTalk allows %(limit)s.") % args
    return _("Button %(i)s's link must start with https:// (or http://).") % args


def _title_or_text(exc: MessageInvalid, lang: str) -> str | None:
    args = _figures(exc, lang)
    if exc.field in _TITLE_FIELDS:
        if exc.code == "too_long":
            return (
                _("The %(language)s title is %(length)s characters; DingTalk allows %(limit)s.")
                % args
            )
        return (
            _(
                "Write the %(language)s title: DingTalk does not send this kind of message without one."
            )
            % args
        )
    if exc.field in _TEXT_FIELDS:
        if exc.code == "too_long":
            return (
                _("The %(language)s text is %(length)s characters; DingTalk allows %(limit)s.")
                % args
            )
        return (
            _(
                "Write the %(language)s text: DingTalk does not send this kind of message without it."
            )
            % args
        )
    if exc.field == "text.content":
        if exc.code == "too_long":
            return (
                _(
                    "The %(language)s title and text together are %(length)s characters; DingTalk allows %(limit)s."
                )
                % args
            )
        return _("Write the %(language)s title or text.") % args
    return None


def explain(exc: MessageInvalid, lang: str) -> str:
    """One translated sentence naming the field, the language, the size and what DingTalk allows."""
    args = _figures(exc, lang)
    plain = _title_or_text(exc, lang)
    if plain is not None:
        return plain
    button = _BUTTON.search(exc.field)
    if button:
        return _button(exc, lang, int(button.group(1)), button.group(2))
    if exc.field == "action_card.btn_json_list" and exc.code == "too_long":
        return (
            _(
                "The %(language)s buttons' titles and links together are %(length)s characters; DingTalk allows %(limit)s. Shorten them."
            )
            % args
        )
    if exc.field == "link.messageUrl":
        if exc.code == "required":
            return _("A link message needs the address it opens.")
        return _("The link address must start with https:// (or http://).")
    if exc.field == "link.picUrl":
        return _("Give the address of the picture shown with the link, starting https://.")
    if exc.field == "voice.duration":
        return _("A voice clip must last 1 to 59 seconds.")
    if exc.field.endswith("media_id"):
        return _("Attach the image, file or voice clip to send.")
    if exc.code == "too_big":
        return (
            _(
                "The %(language)s message is %(length)s bytes as sent (a Chinese character takes 3 bytes); DingTalk allows %(limit)s. Shorten the title or text."
            )
            % args
        )
    return _("DingTalk would refuse the %(language)s message as it stands.") % args


def explain_upload(media_type: str, filename: str, size: int) -> str:
    """Why DingTalk's media upload would refuse this file (dingtalk.messages.validate_media_upload)."""
    max_bytes, extensions = MEDIA_TYPES[media_type]
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    kind = str(MessageKind(media_type).label) if media_type in MessageKind.values else media_type
    if extension not in extensions:
        return _("%(kind)s: this file type is not accepted; it must be one of %(types)s.") % {
            "kind": kind,
            "types": ", ".join(sorted(extensions)),
        }
    if size <= 0:
        return _("The attached file is empty.")
    return _("The %(kind)s is %(size)s MB; DingTalk allows %(limit)s MB.") % {
        "kind": kind,
        "size": number_format(size / 1024 / 1024, decimal_pos=1),
        "limit": number_format(max_bytes // (1024 * 1024)),
    }
