"""The small subset of DingTalk markdown a phone shows (headings, bold, links, paragraphs),
rendered to safe HTML for pages where staff read a notice as the recipient will: the same
rules as the compose page's live preview (static/js/notices.js). Everything else is escaped."""

from __future__ import annotations

import re

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_INLINE = re.compile(r"\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$", re.DOTALL)
_SAFE_LINK = re.compile(r"^(https?:|dingtalk:)")


def _inline(text: str) -> str:
    out: list[str] = []
    last = 0
    for match in _INLINE.finditer(text):
        out.append(escape(text[last : match.start()]))
        if match.group(1) is not None:
            out.append(f"<strong>{escape(match.group(1))}</strong>")
        else:
            label, url = match.group(2), match.group(3)
            href = f' href="{escape(url)}"' if _SAFE_LINK.match(url) else ""
            out.append(f'<a{href} rel="noopener">{escape(label)}</a>')
        last = match.end()
    out.append(escape(text[last:]))
    return "".join(out)


def render_markdown(text: str) -> SafeString:
    """Paragraphs (blank-line separated), headings, **bold** and [links](https://...)."""
    blocks: list[str] = []
    for block in re.split(r"\n{2,}", text or ""):
        heading = _HEADING.match(block)
        body = heading.group(2) if heading else block
        lines = "<br>".join(_inline(line) for line in body.split("\n"))
        blocks.append(f"<h4>{lines}</h4>" if heading else f"<p>{lines}</p>")
    return mark_safe("".join(blocks))  # noqa: S308 - every piece of text above is escaped
