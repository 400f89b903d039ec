"""{% load notices_preview %}: {{ text|dingtalk_markdown }} renders DingTalk's markdown subset."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from notices.rendering import render_markdown

register = template.Library()


@register.filter
def dingtalk_markdown(text: str) -> SafeString:
    return render_markdown(str(text or ""))
