"""Helpers for notices tests and the benchmark: audiences, templates, notices in given states."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Department
from audiences.models import Recipient, RiskLevel, Segment, SubscriptionSource
from common.testing.cast import give_authenticator
from notices import services, templating
from notices.models import Approval, MessageKind, Notice, NoticeTemplate, NoticeVersion, Tier
from notices.versions import compute_version_hash, notice_snapshot


def add_recipients(department: Department, count: int, *, start: int = 0, risk: str = "") -> None:
    """Subscribed recipients `r<start>`..; rows only (the audiences import is tested elsewhere)."""
    now = timezone.now()
    Recipient.objects.bulk_create(
        [
            Recipient(
                department=department,
                dingtalk_user_id=f"{department.code.lower()}-r{i}",
                subscription_source=SubscriptionSource.IMPORT,
                subscription_changed_at=now,
                risk_level=risk,
            )
            for i in range(start, start + count)
        ],
        batch_size=5000,
    )


def everyone_segment(
    department: Department, *, name: str = "Everyone", high_risk: bool = False
) -> Segment:
    return Segment.objects.create(
        department=department,
        name=name,
        risk_levels=[RiskLevel.HIGH] if high_risk else [],
    )


def targeted_fields(segment: Segment, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "tier": Tier.TARGETED,
        "kind": MessageKind.TEXT,
        "title_en": "Water suspension in Sha Tin",
        "title_zh": "沙田暫停供水",
        "body_en": "Water supply will be suspended tonight from 23:00 to 06:00.",
        "body_zh": "今晚十一時至明早六時暫停供水。",
        "segments": [segment],
    }
    fields.update(overrides)
    return fields


def compose_data(segment: Segment | None = None, **overrides: Any) -> dict[str, Any]:
    """The compose page's form fields (POST data) for a targeted text notice."""
    data: dict[str, Any] = {
        "tier": "targeted",
        "kind": "text",
        "classification": "unclassified",
        "title_en": "Water suspension",
        "title_zh": "暫停供水",
        "body_en": "Tonight 23:00-06:00.",
        "body_zh": "今晚十一時至六時。",
        "max_reminders": "0",
    }
    if segment is not None:
        data["segments"] = [str(segment.pk)]
    data.update(overrides)
    return data


def citywide_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "tier": Tier.CITYWIDE,
        "kind": MessageKind.ACTION_CARD,
        "title_en": "Red Rainstorm Warning Signal",
        "title_zh": "紅色暴雨警告信號",
        "body_en": "Heavy rain. Stay indoors.",
        "body_zh": "大雨。請留在室內。",
        "buttons": [
            {"title_en": "Safety advice", "title_zh": "安全提示", "url": "https://www.hko.gov.hk/"}
        ],
    }
    fields.update(overrides)
    return fields


def submitted_notice(author: User, department: Department, **fields: Any) -> Notice:
    notice = services.notice_create(actor=author, department=department, **fields)
    return services.notice_submit(actor=author, notice=notice)


def seal_approved(notice: Notice) -> Notice:
    """A notice written straight into an approved state (delivery's tests and benchmark) made
    to pass the send-time check: its real version hash, a recorded version and two standing
    approvals by two approvers of its department. Its approved reach stays unknown, as for a
    notice approved before reach was recorded, so recipients added later are not a growth."""
    notice.version_hash = compute_version_hash(notice)
    Notice.objects.filter(pk=notice.pk).update(version_hash=notice.version_hash)
    NoticeVersion.objects.update_or_create(
        notice=notice,
        version=notice.version,
        defaults={"version_hash": notice.version_hash, "snapshot": notice_snapshot(notice)},
    )
    code = notice.department.code.lower()
    for name in ("approver-a", "approver-b"):
        approver, _ = User.objects.get_or_create(username=f"{code}.{name}")
        Approval.objects.get_or_create(
            notice=notice,
            version_hash=notice.version_hash,
            approver=approver,
            defaults={"version": notice.version, "totp_verified": True},
        )
    return notice


def totp_device(user: User) -> TOTPDevice:
    return give_authenticator(user)


def current_code(user: User) -> str:
    """A code the user's authenticator shows now (each code can be used once)."""
    device = totp_device(user)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = timezone.now().timestamp()
    return f"{totp.token():0{device.digits}d}"


def rainstorm_template(department: Department, colour: str = "red") -> NoticeTemplate:
    templating.templates_seed(actor=None, department=department)
    return NoticeTemplate.objects.get(department=department, code=f"rainstorm-{colour}")
