"""Forms for the notice pages: shape and cleanliness only; the rules are in notices.services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Department
from audiences.models import Segment
from dingtalk import messages as dt
from notices.models import Classification, MessageKind, Notice, NoticeTemplate, RemindWhom, Tier

BUTTON_ROWS = dt.MAX_BUTTONS
DATETIME_WIDGET = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class NoticeForm(forms.Form):
    tier = forms.ChoiceField(label=_("Tier"), choices=Tier.choices)
    kind = forms.ChoiceField(label=_("Message kind"), choices=MessageKind.choices)
    title_en = forms.CharField(label=_("Title (English)"), required=False, max_length=200)
    title_zh = forms.CharField(
        label=_("Title (Traditional Chinese)"), required=False, max_length=200
    )
    body_en = forms.CharField(label=_("Text (English)"), required=False, widget=forms.Textarea)
    body_zh = forms.CharField(
        label=_("Text (Traditional Chinese)"), required=False, widget=forms.Textarea
    )
    link_url = forms.CharField(label=_("Link address"), required=False, max_length=700)
    link_pic_url = forms.CharField(label=_("Link picture address"), required=False, max_length=700)
    upload = forms.FileField(label=_("Attachment (image, file or voice)"), required=False)
    duration_s = forms.IntegerField(
        label=_("Voice length (seconds)"), required=False, min_value=1, max_value=59
    )
    voice_from_text = forms.BooleanField(
        label=_("Add a Cantonese voice clip read from the Chinese text"),
        required=False,
        help_text=_(
            "Sent as a voice message followed by the text (without buttons or a link). Under 60 "
            "seconds: for a long text, write a short summary below and the clip reads that "
            "instead."
        ),
    )
    voice_summary = forms.CharField(
        label=_("Voice summary (Chinese, optional)"),
        required=False,
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    segments = forms.ModelMultipleChoiceField(
        label=_("Audience segments"),
        queryset=Segment.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_(
            "A citywide notice ignores the segments. Sent organisation-wide it reaches every "
            "member of the DingTalk organisation, portal recipient or not (the pre-flight says "
            "how many); otherwise every subscriber."
        ),
    )
    high_risk = forms.BooleanField(label=_("Treat as high risk (two approvers)"), required=False)
    requires_confirmation = forms.BooleanField(label=_("Requires confirmation"), required=False)
    remind_after_minutes = forms.IntegerField(
        label=_("Remind after (minutes)"), required=False, min_value=1
    )
    max_reminders = forms.IntegerField(
        label=_("Reminders at most"), required=False, min_value=0, max_value=10
    )
    remind_whom = forms.ChoiceField(
        label=_("Remind whom"), choices=[("", "—"), *RemindWhom.choices], required=False
    )
    send_at = forms.DateTimeField(
        label=_("Send at (empty: on approval)"), required=False, widget=DATETIME_WIDGET
    )
    expires_at = forms.DateTimeField(label=_("Expires at"), required=False, widget=DATETIME_WIDGET)
    classification = forms.ChoiceField(label=_("Classification"), choices=Classification.choices)
    template = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, department: Department, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.department = department
        self.fields["segments"].queryset = Segment.objects.filter(  # type: ignore[attr-defined]
            department=department
        ).order_by("name")
        for i in range(1, BUTTON_ROWS + 1):
            self.fields[f"button_{i}_title_en"] = forms.CharField(
                label=_("Button %(i)d title (English)") % {"i": i}, required=False, max_length=40
            )
            self.fields[f"button_{i}_title_zh"] = forms.CharField(
                label=_("Button %(i)d title (Chinese)") % {"i": i}, required=False, max_length=40
            )
            self.fields[f"button_{i}_url"] = forms.CharField(
                label=_("Button %(i)d link") % {"i": i}, required=False, max_length=700
            )

    def button_rows(self) -> list[tuple[forms.BoundField, forms.BoundField, forms.BoundField]]:
        return [
            (self[f"button_{i}_title_en"], self[f"button_{i}_title_zh"], self[f"button_{i}_url"])
            for i in range(1, BUTTON_ROWS + 1)
        ]

    def button_error_ids(self) -> str:
        """Ids of the buttons' errors (shown once above their table) for each input to name."""
        count = len(self.errors.get("button_1_title_en", []))
        return " ".join(f"id_button_1_title_en_error_{n}" for n in range(count))

    def buttons(self) -> list[dict[str, str]]:
        data = self.cleaned_data
        rows = []
        for i in range(1, BUTTON_ROWS + 1):
            row = {
                "title_en": data.get(f"button_{i}_title_en") or "",
                "title_zh": data.get(f"button_{i}_title_zh") or "",
                "url": data.get(f"button_{i}_url") or "",
            }
            if any(row.values()):
                rows.append(row)
        return rows

    def notice_fields(self) -> dict[str, Any]:
        """The cleaned data as notice_create/notice_update fields."""
        data = self.cleaned_data
        kind = MessageKind.VOICE if data.get("voice_from_text") else data["kind"]
        return {
            "voice_from_text": bool(data.get("voice_from_text")),
            "voice_summary": data.get("voice_summary") or "",
            "tier": data["tier"],
            "kind": kind,
            "title_en": data.get("title_en") or "",
            "title_zh": data.get("title_zh") or "",
            "body_en": data.get("body_en") or "",
            "body_zh": data.get("body_zh") or "",
            "buttons": self.buttons() if kind == MessageKind.ACTION_CARD else [],
            "link_url": data.get("link_url") or "" if kind == MessageKind.LINK else "",
            "link_pic_url": data.get("link_pic_url") or "" if kind == MessageKind.LINK else "",
            "segments": list(data.get("segments") or []) if data["tier"] != Tier.CITYWIDE else [],
            "high_risk": bool(data.get("high_risk")),
            "requires_confirmation": bool(data.get("requires_confirmation")),
            "remind_after_minutes": data.get("remind_after_minutes"),
            "max_reminders": data.get("max_reminders") or 0,
            "remind_whom": data.get("remind_whom") or "",
            "send_at": data.get("send_at"),
            "expires_at": data.get("expires_at"),
            "classification": data["classification"],
        }

    def add_service_errors(self, errors: dict[str, list[str]]) -> None:
        for name, messages in errors.items():
            target = name if name in self.fields else None
            if name.startswith("button"):
                target = "button_1_title_en"
            for message in messages:
                self.add_error(target, message)


def notice_initial(notice: Notice) -> dict[str, Any]:
    initial: dict[str, Any] = {
        name: getattr(notice, name)
        for name in (
            "tier",
            "kind",
            "title_en",
            "title_zh",
            "body_en",
            "body_zh",
            "link_url",
            "link_pic_url",
            "high_risk",
            "requires_confirmation",
            "remind_after_minutes",
            "max_reminders",
            "remind_whom",
            "send_at",
            "expires_at",
            "classification",
            "voice_from_text",
            "voice_summary",
        )
    }
    initial["segments"] = list(notice.segments.all())
    for i, button in enumerate(notice.buttons or [], start=1):
        for key in ("title_en", "title_zh", "url"):
            initial[f"button_{i}_{key}"] = button.get(key, "")
    return initial


def template_initial(fields: dict[str, Any], template: NoticeTemplate) -> dict[str, Any]:
    initial = {k: v for k, v in fields.items() if k != "buttons"}
    for i, button in enumerate(fields.get("buttons") or [], start=1):
        for key in ("title_en", "title_zh", "url"):
            initial[f"button_{i}_{key}"] = button.get(key, "")
    initial["template"] = template.pk
    return initial


class TemplateValuesForm(forms.Form):
    """One field per placeholder of the chosen template."""

    def __init__(self, *args: Any, names: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in names:
            self.fields[f"value_{name}"] = forms.CharField(label=f"{{{name}}}", max_length=200)


class ApproveForm(forms.Form):
    version_hash = forms.CharField(widget=forms.HiddenInput, max_length=64)
    totp_token = forms.CharField(
        label=_("Authenticator code"),
        required=False,
        max_length=12,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    reach_acknowledged = forms.BooleanField(required=False)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"), max_length=1000, widget=forms.Textarea(attrs={"rows": 2})
    )
