"""Test and benchmark helpers: a department wired to the simulator, recipients, approved notices.

Used by tests/delivery and bench/dispatch.py (shared helpers live in the app because the test
suite runs with --import-mode=importlib).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from django.utils import timezone

from accounts.models import Department
from audiences.models import District, Recipient, Segment, SubscriptionSource, SubscriptionState
from dingtalk.simulator.config import AppConfig
from notices.models import Notice, Status, Tier

LANGUAGE_CYCLE = ("en", "zh-hant", "both")


def connect_department(department: Department, app: AppConfig) -> Department:
    """Point a department at one simulator app; the secret goes to a private temp file."""
    folder = Path(tempfile.mkdtemp(prefix="delivery-secret-"))
    secret = folder / "secret"
    secret.write_text(app.app_secret)
    secret.chmod(0o600)
    department.dingtalk_app_key = app.app_key
    department.dingtalk_agent_id = app.agent_id
    department.dingtalk_secret_ref = f"file:{secret}"
    department.dingtalk_edition = app.edition
    department.save()
    return department


def sim_userid(department_code: str, index: int) -> str:
    return f"{department_code.lower()}{index:07d}"


def make_recipients(
    department: Department,
    count: int,
    *,
    start: int = 0,
    languages: tuple[str, ...] = LANGUAGE_CYCLE,
    userid_prefix: str | None = None,
) -> int:
    """Subscribed recipients whose ids are members of the simulator's generated directory."""
    districts: list[int | None] = list(District.objects.order_by("pk").values_list("pk", flat=True))
    districts = districts or [None]
    now = timezone.now()
    prefix = (userid_prefix or department.code).lower()
    rows = [
        Recipient(
            department=department,
            dingtalk_user_id=f"{prefix}{i:07d}",
            name=f"Person {i}",
            language=languages[i % len(languages)],
            district_id=districts[i % len(districts)],
            subscription_state=SubscriptionState.SUBSCRIBED,
            subscription_source=SubscriptionSource.IMPORT,
            subscription_changed_at=now,
        )
        for i in range(start, start + count)
    ]
    Recipient.objects.bulk_create(rows, batch_size=5000)
    return count


def make_notice(
    department: Department,
    *,
    tier: str = Tier.CITYWIDE,
    status: str = Status.APPROVED,
    title: str = "Water supply interruption",
    requires_confirmation: bool = False,
    max_reminders: int = 0,
    remind_after_minutes: int | None = None,
    remind_whom: str = "",
) -> Notice:
    """An approved notice, as notices' approval leaves it (content frozen, hash recorded)."""
    body = f"{title}: details for residents."
    digest = hashlib.sha256(f"{title}|{body}|{tier}".encode()).hexdigest()
    notice = Notice.objects.create(
        department=department,
        tier=tier,
        status=status,
        kind="markdown",
        title_en=title,
        title_zh="供水暫停",
        body_en=body,
        body_zh="住戶詳情。",
        requires_confirmation=requires_confirmation,
        max_reminders=max_reminders,
        remind_after_minutes=remind_after_minutes,
        remind_whom=remind_whom,
        version_hash=digest,
        approved_at=timezone.now(),
    )
    if tier != Tier.CITYWIDE:
        segment, _ = Segment.objects.get_or_create(
            department=department, name="Everyone subscribed (delivery tests)"
        )
        notice.segments.add(segment)
    return notice
