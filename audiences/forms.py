"""Forms: shape and cleanliness only; department rules are checked again in the services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Department
from audiences.models import (
    District,
    Recipient,
    RiskLevel,
    Segment,
    SegmentChannel,
    SegmentKind,
    SegmentMember,
    SubscriptionFilter,
    Tag,
    Venue,
)
from audiences.selectors import SegmentRule
from audiences.services import SegmentInput


class SegmentForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=120)
    description = forms.CharField(label=_("Description"), max_length=300, required=False)
    kind = forms.ChoiceField(
        label=_("Who is in it"),
        choices=SegmentKind.choices,
        widget=forms.RadioSelect,
        initial=SegmentKind.FILTER,
    )
    subscription = forms.ChoiceField(
        label=_("Subscription"),
        choices=SubscriptionFilter.choices,
        initial=SubscriptionFilter.SUBSCRIBED,
    )
    channel = forms.ChoiceField(
        label=_("Reached through"),
        choices=SegmentChannel.choices,
        initial=SegmentChannel.MEMBERS,
        required=False,
        help_text=_(
            "Members get work notifications (read receipts, confirmations); Service Window "
            "followers get the department's Service Window broadcasts (no read receipts)."
        ),
    )
    districts = forms.ModelMultipleChoiceField(
        label=_("Districts"),
        queryset=District.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    function_tags = forms.CharField(
        label=_("Functions"),
        required=False,
        help_text=_("Comma-separated, e.g. frontline, logistics. Empty: any."),
    )
    risk_levels = forms.MultipleChoiceField(
        label=_("Risk levels"),
        choices=RiskLevel.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    tags = forms.ModelMultipleChoiceField(
        label=_("Tags (any of)"),
        queryset=Tag.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    members = forms.CharField(
        label=_("Chosen recipients"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("DingTalk user ids, one per line (for 'Chosen recipients')."),
    )
    venue_rule = forms.BooleanField(
        label=_("Only people who checked in at a venue"), required=False
    )
    venues = forms.ModelMultipleChoiceField(
        label=_("At these venues"),
        queryset=Venue.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    centre_latitude = forms.FloatField(
        label=_("Or within the radius of: latitude"), required=False, min_value=22.1, max_value=22.6
    )
    centre_longitude = forms.FloatField(
        label=_("longitude"), required=False, min_value=113.8, max_value=114.5
    )
    radius_m = forms.IntegerField(
        label=_("Radius (metres)"), required=False, min_value=1, max_value=50_000
    )
    checked_in_from = forms.DateTimeField(
        label=_("Checked in from"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    checked_in_to = forms.DateTimeField(
        label=_("Checked in until"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def __init__(self, *args: Any, department: Department, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.department = department
        self.fields["tags"].queryset = Tag.objects.filter(department=department)  # type: ignore[attr-defined]
        self.fields["venues"].queryset = Venue.objects.filter(department=department)  # type: ignore[attr-defined]

    def clean_function_tags(self) -> list[str]:
        raw: str = self.cleaned_data.get("function_tags") or ""
        return sorted({t.strip().lower() for t in raw.split(",") if t.strip()})

    def clean_members(self) -> list[str]:
        raw: str = self.cleaned_data.get("members") or ""
        return [u.strip() for u in raw.replace(",", "\n").splitlines() if u.strip()]

    def to_input(self) -> SegmentInput:
        d = self.cleaned_data
        return SegmentInput(
            name=d["name"],
            description=d.get("description", ""),
            kind=d["kind"],
            subscription=d["subscription"],
            channel=d.get("channel") or SegmentChannel.MEMBERS,
            districts=list(d.get("districts") or []),
            function_tags=d.get("function_tags") or [],
            risk_levels=d.get("risk_levels") or [],
            tags=list(d.get("tags") or []),
            member_user_ids=d.get("members") or [],
            venue_rule=bool(d.get("venue_rule")),
            venues=list(d.get("venues") or []),
            centre_latitude=d.get("centre_latitude"),
            centre_longitude=d.get("centre_longitude"),
            radius_m=d.get("radius_m"),
            checked_in_from=d.get("checked_in_from"),
            checked_in_to=d.get("checked_in_to"),
        )


class SegmentCountForm(SegmentForm):
    """The editor's live count: the same fields, but an unnamed draft is fine."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False

    def to_rule(self) -> SegmentRule:
        d = self.cleaned_data
        lat, lon = d.get("centre_latitude"), d.get("centre_longitude")
        member_ids: list[int] | None = None
        if d["kind"] == SegmentKind.LIST:
            member_ids = list(
                Recipient.objects.filter(
                    department=self.department, dingtalk_user_id__in=d.get("members") or []
                ).values_list("pk", flat=True)
            )
        return SegmentRule(
            department_id=self.department.pk,
            kind=d["kind"],
            subscription=d["subscription"],
            channel=d.get("channel") or SegmentChannel.MEMBERS,
            district_ids=[x.pk for x in d.get("districts") or []],
            function_tags=d.get("function_tags") or [],
            risk_levels=d.get("risk_levels") or [],
            tag_ids=[t.pk for t in d.get("tags") or []],
            member_ids=member_ids,
            venue_rule=bool(d.get("venue_rule")),
            venue_ids=[v.pk for v in d.get("venues") or []],
            centre=(lat, lon) if lat is not None and lon is not None else None,
            radius_m=d.get("radius_m"),
            checked_in_from=d.get("checked_in_from"),
            checked_in_to=d.get("checked_in_to"),
        )


def segment_initial(segment: Segment) -> dict[str, Any]:
    members = Recipient.objects.filter(
        pk__in=SegmentMember.objects.filter(segment=segment).values("recipient_id")
    ).values_list("dingtalk_user_id", flat=True)
    return {
        "name": segment.name,
        "description": segment.description,
        "kind": segment.kind,
        "subscription": segment.subscription,
        "channel": segment.channel,
        "districts": list(segment.districts.all()),
        "function_tags": ", ".join(segment.function_tags or []),
        "risk_levels": segment.risk_levels,
        "tags": list(segment.tags.all()),
        "members": "\n".join(members),
        "venue_rule": segment.venue_rule,
        "venues": list(segment.venues.all()),
        "centre_latitude": segment.centre_latitude,
        "centre_longitude": segment.centre_longitude,
        "radius_m": segment.radius_m,
        "checked_in_from": segment.checked_in_from,
        "checked_in_to": segment.checked_in_to,
    }


class CsvUploadForm(forms.Form):
    file = forms.FileField(label=_("CSV file"))
