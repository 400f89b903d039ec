"""Filter and export forms for the auditors' page: shape and cleanliness only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from django import forms
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

from accounts.models import Department
from audit.actions import registered_actions
from audit.models import ExportFormat
from audit.selectors import EventFilters

_target_type = RegexValidator(
    r"^\w+\.\w+$", _("Use the form app.Model, for example accounts.Department.")
)


class DateInput(forms.DateInput):
    input_type = "date"


class EventFilterForm(forms.Form):
    date_from = forms.DateField(label=_("From"), required=False, widget=DateInput)
    date_to = forms.DateField(label=_("To"), required=False, widget=DateInput)
    department = forms.ChoiceField(label=_("Department"), required=False)
    actor = forms.CharField(label=_("Actor (username)"), required=False, max_length=200)
    action = forms.ChoiceField(label=_("Action"), required=False)
    target_type = forms.CharField(
        label=_("Target type"), required=False, max_length=100, validators=[_target_type]
    )
    target_id = forms.CharField(label=_("Target id"), required=False, max_length=64)
    q = forms.CharField(label=_("Search"), required=False, max_length=100)

    def __init__(self, *args: Any, departments: Iterable[Department], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        dept_field = cast(forms.ChoiceField, self.fields["department"])
        action_field = cast(forms.ChoiceField, self.fields["action"])
        dept_field.choices = [
            ("", _("All your departments")),
            *((d.code, f"{d.code} · {d.name_en}") for d in departments),
        ]
        action_field.choices = [("", _("Any action")), *registered_actions().items()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("The end date is before the start date."))
        return cleaned

    def filters(self) -> EventFilters:
        data = self.cleaned_data
        return EventFilters(
            date_from=data["date_from"].isoformat() if data.get("date_from") else "",
            date_to=data["date_to"].isoformat() if data.get("date_to") else "",
            department=data.get("department") or "",
            actor=(data.get("actor") or "").strip(),
            action=data.get("action") or "",
            target_type=(data.get("target_type") or "").strip(),
            target_id=(data.get("target_id") or "").strip(),
            q=(data.get("q") or "").strip(),
        )


class ExportForm(EventFilterForm):
    format = forms.ChoiceField(choices=ExportFormat.choices)


class ReceiptOpenForm(forms.Form):
    """The audit page's "Receipt report" field: a notice id."""

    notice = forms.IntegerField(label=_("Notice id"), min_value=1)
