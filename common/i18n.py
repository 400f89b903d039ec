"""Bilingual values shown in the reader's language: Chinese to a zh-Hant reader when there is
Chinese, else English (names of departments and districts, notice titles)."""

from __future__ import annotations

from collections.abc import Callable

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import get_language

# A message's language ("en", "zh"; "both" is the two joined) -> the catalogue's.
MESSAGE_LANGUAGES = {"en": "en", "zh": "zh-hant"}


def reader_wants_chinese() -> bool:
    return (get_language() or "").lower().startswith("zh")


def in_reader_language(english: str, chinese: str) -> str:
    if reader_wants_chinese():
        return chinese or english
    return english or chinese


def in_both_languages(render: Callable[[], str], separator: str = "\n\n") -> str:
    """`render()` in English, then in Traditional Chinese: for messages to staff (e-mail, DingTalk
    alerts), whose language the portal does not know."""
    parts = []
    for language in ("en", "zh-hant"):
        with translation.override(language):
            parts.append(render())
    return separator.join(parts)


def in_message_language(language: str, text: Promise, **values: object) -> str:
    """A fixed text of a DingTalk message (from the translation catalogue) in the message's
    language ("en" or "zh"); for "both", the English and the Chinese joined by a space."""
    if language not in MESSAGE_LANGUAGES:
        english = in_message_language("en", text, **values)
        return f"{english} {in_message_language('zh', text, **values)}"
    with translation.override(MESSAGE_LANGUAGES[language]):
        return str(text) % values if values else str(text)
