"""Input shapes of the delivery pages (validation only; rules live in the services)."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class RecallForm(forms.Form):
    reason = forms.CharField(label=_("Reason for the recall"), max_length=500)


class ConfirmForm(forms.Form):
    latitude = forms.FloatField(required=False, min_value=-90, max_value=90)
    longitude = forms.FloatField(required=False, min_value=-180, max_value=180)


class OutreachCloseForm(forms.Form):
    outcome = forms.CharField(label=_("Outcome"), max_length=300)
