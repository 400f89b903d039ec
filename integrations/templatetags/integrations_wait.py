"""{% trigger_wait notice %}: how long a triggered notice has waited against the department's target."""

from __future__ import annotations

from typing import Any

from django import template

from integrations.selectors import trigger_wait_for
from notices.models import Notice

register = template.Library()


@register.inclusion_tag("integrations/_wait_badge.html")
def trigger_wait(notice: Notice) -> dict[str, Any]:
    """Renders nothing for a notice no trigger prepared."""
    return {"wait": trigger_wait_for(notice)}
