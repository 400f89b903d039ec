"""The check delivery's planner makes at send time.

At send time delivery calls `notice_check_before_send` inside its own transaction (planner
start, a due scheduled notice, the start again of a plan paused for a re-approval) and
`notice_check_before_resume` (resume after a pause): the hash and the number of approvals the
notice now needs are computed again, and the audience is counted. A different hash, too few
approvals for the risk or the reach now, or a reach grown beyond the department's allowance
(Department.reach_growth_percent) since the final approval sends nothing: the notice goes back
to the approval queue (notices.requeue.return_for_approval: a new version, approvals voided,
the reason on it, audited, approvers alerted).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.utils.translation import gettext_noop

from notices.approval import approval_count, required_approvals
from notices.guards import lock_notice
from notices.models import Notice, Status
from notices.preflight import true_reach
from notices.requeue import return_for_approval
from notices.versions import compute_version_hash

CHANGED_AT_SEND = gettext_noop(
    "At send time the audience was not the one approved: nothing was sent and the notice "
    "waits for approval again."
)
MORE_APPROVERS_AT_SEND = gettext_noop(
    "At send time the notice needed more approvers than approved it (its risk or reach "
    "changed): nothing was sent and the notice waits for approval again."
)
REACH_GREW_AT_SEND = gettext_noop(
    "At send time the audience was larger than approved by more than the department allows: "
    "nothing was sent and the notice waits for approval again."
)


@dataclass(frozen=True)
class SendCheck:
    """What the send-time check found: `code` empty when the notice may go."""

    code: str = ""
    reason: str = ""
    reach: int | None = None
    approved_reach: int | None = None
    required: int = 0
    approvals: int = 0

    @property
    def ok(self) -> bool:
        return not self.code


def send_check(notice: Notice) -> SendCheck:
    """Hash, risk and reach of `notice` now against what was approved (reads only)."""
    approved_hash = notice.version_hash
    if compute_version_hash(notice) != approved_hash:
        return SendCheck(code="changed_at_send", reason=CHANGED_AT_SEND)
    reach = true_reach(notice).count
    have = approval_count(notice)
    needed = required_approvals(notice, reach=reach)
    approved_reach = notice.approved_reach if notice.approved_reach is not None else notice.reach
    figures = SendCheck(reach=reach, approved_reach=approved_reach, required=needed, approvals=have)
    if have < needed:
        return replace(figures, code="more_approvers_needed", reason=MORE_APPROVERS_AT_SEND)
    allowed = notice.department.reach_growth_percent
    if approved_reach is not None and reach * 100 > approved_reach * (100 + allowed):
        return replace(figures, code="reach_grew", reason=REACH_GREW_AT_SEND)
    return figures


def notice_check_before_send(notice_id: int) -> SendCheck:
    """Delivery's last check before an approved or due scheduled notice starts sending.

    Call inside the planner's transaction: on a failed check the notice is back in the approval
    queue (audited, approvers alerted) when it commits, and nothing may be planned.
    """
    return _check_and_return(notice_id, (Status.APPROVED, Status.SCHEDULED))


def notice_check_before_resume(notice_id: int) -> SendCheck:
    """Delivery's check before a paused notice sends again: the same rule as before the start.

    On a failed check the paused notice goes back to the approval queue (its plan stays paused
    until the new approval, which delivery's planner takes as the resume).
    """
    return _check_and_return(notice_id, (Status.PAUSED,))


def _check_and_return(notice_id: int, statuses: tuple[str, ...]) -> SendCheck:
    notice = Notice.objects.filter(pk=notice_id).first()
    if notice is None:
        return SendCheck(code="missing")
    locked = lock_notice(notice)
    if locked.status not in statuses:
        return SendCheck(code="not_approved")
    check = send_check(locked)
    if not check.ok:
        return_for_approval(locked, code=check.code, reason=check.reason, data=_figures(check))
    return check


def _figures(check: SendCheck) -> dict[str, object]:
    return {
        "reach_now": check.reach,
        "approved_reach": check.approved_reach,
        "required": check.required,
        "approvals": check.approvals,
    }
