from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Department


class LoginForm(forms.Form):
    username = forms.CharField(
        label=_("Username"),
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class OtpForm(forms.Form):
    token = forms.CharField(
        label=_("Code"),
        max_length=16,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )
    backup = forms.BooleanField(label=_("This is a backup code"), required=False)


class EnrolForm(forms.Form):
    token = forms.RegexField(
        label=_("Six-digit code from your authenticator app"),
        regex=r"^\s*\d{6}\s*$",
        error_messages={"invalid": _("Enter the six digits your app shows.")},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


class DepartmentSettingsForm(forms.ModelForm[Department]):
    class Meta:
        model = Department
        fields = [
            "name_en",
            "name_zh",
            "dingtalk_agent_id",
            "dingtalk_app_key",
            "dingtalk_secret_ref",
            "dingtalk_edition",
            "reach_growth_percent",
            "broadcast_to_all_members",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Left empty, the allowance stays as it is (forms written before the setting existed).
        self.fields["reach_growth_percent"].required = False

    def clean_reach_growth_percent(self) -> int:
        value = self.cleaned_data.get("reach_growth_percent")
        return self.instance.reach_growth_percent if value is None else int(value)
