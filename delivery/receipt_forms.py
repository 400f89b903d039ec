"""Filter and export forms of the per-notice receipt report: shape and cleanliness only."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from audit.models import ExportFormat
from delivery.models import DeliveryState
from delivery.receipt_report import Confirmed, ReceiptFilters


class ReceiptFilterForm(forms.Form):
    state = forms.ChoiceField(label=_("State"), required=False)
    confirmed = forms.ChoiceField(
        label=_("Confirmation"),
        required=False,
        choices=[
            ("", _("Either")),
            (Confirmed.YES.value, _("Confirmed")),
            (Confirmed.NO.value, _("Not confirmed")),
        ],
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        state_field = cast(forms.ChoiceField, self.fields["state"])
        state_field.choices = [("", _("Any state")), *DeliveryState.choices]

    def filters(self) -> ReceiptFilters:
        return ReceiptFilters(
            state=self.cleaned_data.get("state") or "",
            confirmed=self.cleaned_data.get("confirmed") or "",
        )


class ReceiptExportForm(ReceiptFilterForm):
    format = forms.ChoiceField(choices=ExportFormat.choices)
