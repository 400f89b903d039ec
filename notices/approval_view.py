"""What the approval page and the inbox tell an approver: what they may do and, when they may
not, why in plain words; the rule that sets how many approvals the notice needs; the pre-flight
the author saw; who wrote and edited the version; the audience and what the send reaches.

Reads only: the decision itself is notices.approval's (notice_approve checks it all again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import permissions as perms
from accounts.credentials import cooling_off_until
from notices import approval
from notices import content as nc
from notices.models import (
    Approval,
    ContributionKind,
    Notice,
    NoticeContribution,
    Status,
    Tier,
)
from notices.preflight import preflight
from notices.selectors import UserLike


@dataclass(frozen=True)
class Decision:
    may_approve: bool
    may_reject: bool
    why_not: str  # why this person may not approve, in plain translated words ("" if they may)
    approved_by_me: bool = False


def decision_for(user: UserLike, notice: Notice) -> Decision:
    """Whether ``user`` may approve or reject ``notice`` now, and why not."""
    if not perms.has_department_perm(user, perms.APPROVE_NOTICE, notice.department):
        return Decision(False, False, _("Only the department's supervisors approve notices."))
    if notice.status != Status.SUBMITTED:
        return Decision(False, False, _("This notice is not waiting for approval."))
    kinds = set(
        NoticeContribution.objects.filter(
            notice=notice, version=notice.version, user_id=int(user.pk or 0)
        ).values_list("kind", flat=True)
    )
    if ContributionKind.WROTE in kinds:
        why = _("You wrote this version, so another supervisor must approve it.")
        return Decision(False, True, why)
    if kinds:
        why = _("You edited or submitted this version, so another supervisor must approve it.")
        return Decision(False, True, why)
    mine = Approval.objects.filter(
        notice=notice,
        version_hash=notice.version_hash,
        approver_id=int(user.pk or 0),
        voided_at__isnull=True,
    ).exists()
    if mine:
        return Decision(
            False, True, _("You approved this version. Waiting for a second supervisor."), True
        )
    cooling = cooling_off_until(user)
    if cooling is not None:
        why = _("Your credentials were reset recently: you may approve again from %(when)s.") % {
            "when": timezone.localtime(cooling).strftime("%Y-%m-%d %H:%M")
        }
        return Decision(False, True, why)
    return Decision(True, True, "")


def approval_rule(notice: Notice, reach: int | None) -> str:
    """The rule that sets the approvals the notice needs, in plain words."""
    above = int(settings.NOTICES_TWO_APPROVER_AUDIENCE)
    if notice.tier == Tier.CITYWIDE:
        return _("Two supervisors: every citywide notice needs two.")
    if notice.high_risk or approval.has_high_risk(notice):
        return _("Two supervisors: the audience includes high-risk people.")
    if reach is not None and reach > above:
        return _("Two supervisors: it reaches more than %(n)s people.") % {"n": f"{above:,}"}
    return _("One supervisor: a targeted notice to at most %(n)s people, nobody high-risk.") % {
        "n": f"{above:,}"
    }


def authors(notice: Notice) -> dict[str, list[str]]:
    """Who wrote, edited and submitted the current version."""
    found: dict[str, list[str]] = {}
    for kind, user in (
        NoticeContribution.objects.filter(notice=notice, version=notice.version)
        .select_related("user")
        .values_list("kind", "user__username")
    ):
        found.setdefault(str(ContributionKind(kind).label), []).append(user)
    return found


def review_context(notice: Notice) -> dict[str, Any]:
    """The author's view for the approver: previews, pre-flight, rule, authors, audience."""
    content = nc.content_from_notice(notice)
    languages = content.languages()
    figures = preflight(
        department=notice.department,
        tier=notice.tier,
        segments=list(notice.segments.all()),
        languages=len(languages) or 1,
        requires_confirmation=notice.requires_confirmation,
        kind=notice.kind,
        reminders=int(notice.max_reminders or 0),
    )
    return {
        "preflight": figures,
        "rule": approval_rule(notice, figures["recipients"]),
        "authors": authors(notice),
        "previews": [
            {"lang": lang, "title": content.title(lang), "body": content.body(lang)}
            for lang in languages
        ],
        "broadcast_policy": notice.department.broadcast_to_all_members,
    }
