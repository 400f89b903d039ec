"""What a caller may set on a notice, and the rules the whole notice must meet before it is
saved or submitted (the content's own rules are in notices.content)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.utils.translation import gettext as _

from accounts.models import Department
from audiences.models import Segment
from common.errors import ApplicationError
from notices import content as nc
from notices.errors import NoticeInvalid
from notices.models import Classification, Notice, Tier

# Fields a caller may set through notice_create / notice_update (segments are a list of Segment).
CONTENT_FIELDS = (
    "tier",
    "kind",
    "title_en",
    "title_zh",
    "body_en",
    "body_zh",
    "buttons",
    "link_url",
    "link_pic_url",
    "attachment",
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
EDITABLE_FIELDS = frozenset((*CONTENT_FIELDS, "segments"))


def check_segments(department: Department, segments: list[Segment]) -> None:
    """Every segment belongs to the notice's department."""
    if any(s.department_id != department.pk for s in segments):
        raise NoticeInvalid({"segments": [_("Choose segments of this department only.")]})


def validate_notice(
    notice: Notice, segments: list[Segment], *, now: datetime | None = None
) -> None:
    """The whole notice's rules (content, audience, attachment, classification); NoticeInvalid
    maps every broken one to its field."""
    errors = nc.validate_content(nc.content_from_notice(notice), now=now)
    if notice.tier != Tier.CITYWIDE and not segments:
        errors.setdefault("segments", []).append(
            _("Choose at least one segment (a citywide notice reaches every subscriber).")
        )
    if notice.attachment is not None and notice.attachment.department_id != notice.department_id:
        errors.setdefault("attachment", []).append(
            _("The attachment belongs to another department.")
        )
    if notice.classification not in Classification.values:
        errors.setdefault("classification", []).append(_("Choose a classification."))
    if errors:
        raise NoticeInvalid(errors)


def apply_fields(notice: Notice, fields: Mapping[str, Any]) -> list[Segment] | None:
    """Set the given CONTENT_FIELDS on the notice, cleaned; returns the segments if given."""
    unknown = set(fields) - EDITABLE_FIELDS
    if unknown:
        raise ApplicationError(f"Unknown notice fields: {', '.join(sorted(unknown))}.")
    for name in CONTENT_FIELDS:
        if name in fields:
            value = fields[name]
            if name == "buttons":
                value = [
                    {
                        "title_en": str(b.get("title_en") or "").strip(),
                        "title_zh": str(b.get("title_zh") or "").strip(),
                        "url": str(b.get("url") or "").strip(),
                    }
                    for b in (value or [])
                ]
            elif isinstance(value, str):
                value = value.strip()
            setattr(notice, name, value)
    if "segments" in fields:
        return list(fields["segments"] or [])
    return None
