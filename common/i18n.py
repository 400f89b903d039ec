"""Bilingual values shown in the reader's language: Chinese to a zh-Hant reader when there is
Chinese, else English (names of departments and districts, notice titles)."""

from __future__ import annotations

from collections.abc import Callable

from django.utils import translation
from django.utils.translation import get_language


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
