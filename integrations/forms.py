"""Forms for the integrations pages: shape and cleanliness only; rules live in the services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from integrations.models import DepartmentTriggerPolicy, Integration
from notices.models import NoticeTemplate


class IntegrationForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    templates = forms.ModelMultipleChoiceField(
        label=_("Templates it may use"),
        queryset=NoticeTemplate.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("A webhook may only prepare notices from these templates."),
    )
    cap_template = forms.ModelChoiceField(
        label=_("Template for CAP alerts"),
        queryset=NoticeTemplate.objects.none(),
        required=False,
        help_text=_("Filled from each CAP 1.2 alert's English and Chinese information."),
    )
    rate_limit_per_minute = forms.IntegerField(
        label=_("Requests a minute at most"), min_value=1, max_value=600, initial=30
    )

    def __init__(self, *args: Any, templates: QuerySet[NoticeTemplate], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["templates"].queryset = templates  # type: ignore[attr-defined]
        self.fields["cap_template"].queryset = templates  # type: ignore[attr-defined]

    @staticmethod
    def initial_for(integration: Integration) -> dict[str, Any]:
        return {
            "name": integration.name,
            "templates": list(integration.templates.all()),
            "cap_template": integration.cap_template,
            "rate_limit_per_minute": integration.rate_limit_per_minute,
        }


class TriggerPolicyForm(forms.ModelForm[DepartmentTriggerPolicy]):
    class Meta:
        model = DepartmentTriggerPolicy
        fields = ["target_seconds"]
