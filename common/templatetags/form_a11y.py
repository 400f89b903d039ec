"""A form field's widget tied to its help text and errors (aria-describedby, aria-invalid).

templates/includes/field.html gives the help text the id `<auto_id>_helptext` and each error
`<auto_id>_error_<n>`; the widget names them so a screen reader reads them with the field.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.forms import BoundField
from django.utils.safestring import SafeString

register = template.Library()


@register.simple_tag
def a11y_widget(field: BoundField, also: str = "") -> SafeString:
    """The field's widget; `also` adds ids of messages shown elsewhere (e.g. a group's errors)."""
    ids = []
    if field.help_text:
        ids.append(f"{field.auto_id}_helptext")
    ids.extend(f"{field.auto_id}_error_{n}" for n in range(len(field.errors)))
    ids.extend(i for i in also.split() if i not in ids)
    attrs: dict[str, Any] = {}
    if ids:
        attrs["aria-describedby"] = " ".join(ids)
    if field.errors or also:
        attrs["aria-invalid"] = "true"
    return field.as_widget(attrs=attrs)
