"""Alerting supervisors that a notice waits for them: DingTalk work notification, e-mail fallback.

Called by the notices.alert_approvers task after the submit has committed; no transaction is
held while DingTalk or the mail server is called.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.translation import gettext

from accounts.channel import client_for_department
from accounts.models import Membership, Role
from audit.services import audit_record
from common.errors import ApplicationError
from common.i18n import in_both_languages
from common.urls import portal_url
from dingtalk import messages as dt
from dingtalk.errors import DingTalkError
from notices.audit_actions import NoticeAuditAction as Action
from notices.models import Notice, NoticeContribution, Status

logger = logging.getLogger(__name__)
BATCH = 100


@dataclass
class AlertResult:
    dingtalk: list[str] = field(default_factory=list)
    email: list[str] = field(default_factory=list)
    skipped: bool = False


def _message(notice: Notice, url: str) -> dict[str, object]:
    title = in_both_languages(lambda: gettext("Approval needed"), " / ")
    title = f"{title}: {notice.title_en or notice.title_zh}"[: dt.MAX_MARKDOWN_TITLE_CHARS]
    # The notice number, version and hash make every alert's content unique (a notice returned
    # for approval keeps its version and changes its hash): DingTalk silently drops
    # identical content to the same person within a day, which would hide a second warning.

    def facts() -> str:
        return gettext("%(department)s · %(tier)s · %(n)s recipients · [Review](%(url)s)") % {
            "department": notice.department.code,
            "tier": notice.get_tier_display(),
            "n": number_format(notice.reach or 0, force_grouping=True),
            "url": url,
        }

    text = (
        f"### {notice.title_en or notice.title_zh}\n\n"
        + (f"### {notice.title_zh}\n\n" if notice.title_en and notice.title_zh else "")
        + f"#{notice.pk} · v{notice.version} · {notice.version_hash[:8]}\n\n"
        + in_both_languages(facts)
    )
    return dt.markdown(title, text)


def _email(notice: Notice, url: str) -> tuple[str, str]:
    subject = in_both_languages(lambda: gettext("Approval needed"), " / ")
    subject = f"[{notice.department.code}] {subject}: {notice.title_en or notice.title_zh}"

    def body() -> str:
        return gettext(
            "A notice (%(tier)s) waits for your approval: %(title)s. Recipients: %(n)s."
        ) % {
            "tier": notice.get_tier_display(),
            "title": notice.title,
            "n": number_format(notice.reach or 0, force_grouping=True),
        }

    return subject, f"{in_both_languages(body)}\n\n{url}\n"


def approvers_alert(*, notice_id: int) -> AlertResult:
    """Tell the department's eligible supervisors that `notice_id` waits; once per version."""
    notice = Notice.objects.select_related("department").filter(pk=notice_id).first()
    if notice is None or notice.status != Status.SUBMITTED:
        return AlertResult(skipped=True)
    if notice.approvers_alerted_version == notice.version:
        return AlertResult(skipped=True)
    contributors = NoticeContribution.objects.filter(notice=notice, version=notice.version).values(
        "user_id"
    )
    supervisors = list(
        Membership.objects.filter(
            department=notice.department, role=Role.SUPERVISOR, user__is_active=True
        )
        .exclude(user_id__in=contributors)
        .select_related("user")
        .order_by("user_id")
    )
    url = portal_url(reverse("notices:inbox"))
    result = AlertResult()
    by_dingtalk = [m for m in supervisors if m.dingtalk_user_id]
    by_email = [m for m in supervisors if not m.dingtalk_user_id]
    if by_dingtalk:
        try:
            client = client_for_department(notice.department)
            msg = _message(notice, url)
            for start in range(0, len(by_dingtalk), BATCH):
                batch = by_dingtalk[start : start + BATCH]
                client.send(msg, userids=[m.dingtalk_user_id for m in batch])
                result.dingtalk += [m.user.get_username() for m in batch]
        except (DingTalkError, ApplicationError) as exc:
            # An alert is only useful if it is prompt: fall back to e-mail rather than wait.
            logger.warning("DingTalk alert for notice %s failed (%s); e-mailing.", notice_id, exc)
            sent = set(result.dingtalk)
            by_email += [m for m in by_dingtalk if m.user.get_username() not in sent]
    emails = sorted({m.user.email for m in by_email if m.user.email})
    if emails:
        subject, body = _email(notice, url)
        send_mail(subject=subject, message=body, from_email=None, recipient_list=emails)
        result.email = [m.user.get_username() for m in by_email if m.user.email]
    with transaction.atomic():
        Notice.objects.filter(pk=notice.pk, version=notice.version).update(
            approvers_alerted_version=notice.version
        )
        audit_record(
            actor=None,
            action=Action.APPROVERS_ALERTED,
            target=notice,
            data={
                "version": notice.version,
                "version_hash": notice.version_hash,
                "dingtalk": result.dingtalk,
                "email": result.email,
            },
        )
    return result
