"""The two-person approval rule: how many approvals a notice needs, who may give one, and the
approval that hands the notice to delivery.

The rule lives here and only here, so the pages, the admin, the JSON endpoints and a shell all
meet the same checks:

- an approval is bound to the notice's version hash (notices.versions); any edit makes a new
  version and voids every approval;
- nobody who wrote, edited or submitted the version may approve it, nor approve it twice (the
  database refuses the duplicate too);
- an approver whose credentials were reset may not approve for a cooling-off period
  (accounts.credentials.cooling_off_until);
- approvers hold APPROVE_NOTICE in the notice's department and come from an OTP-verified
  session or give a current TOTP code; a two-approver notice always needs a fresh code and the
  acknowledgement of its reach.

Every refusal raises ApprovalRefused and is audited (notices.approval_refused) after the refused
change has rolled back.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import permissions as perms
from accounts.credentials import cooling_off_until
from audiences.models import RiskLevel, Segment
from audit.context import current_context
from audit.services import audit_record
from common.types import Actor
from delivery import enqueue as delivery_enqueue
from notices.audit_actions import NoticeAuditAction as Action
from notices.audit_actions import NoticeOperation as Operation
from notices.errors import ApprovalRefused
from notices.guards import lock_notice, notice_get_visible, run_auditing_refusal
from notices.models import Approval, Notice, NoticeContribution, Status, Tier
from notices.preflight import true_reach
from notices.requeue import audience_changed
from notices.versions import compute_version_hash


def has_high_risk(notice: Notice) -> bool:
    """The notice is marked high-risk, or one of its segments selects a high risk level or a tag
    flagged as a high-risk group (Tag.high_risk: a flag, never the tag's name)."""
    if notice.high_risk:
        return True
    if notice.tier == Tier.CITYWIDE:
        return False
    segments = list(notice.segments.all())
    if any(RiskLevel.HIGH in (s.risk_levels or []) for s in segments):
        return True
    return Segment.tags.through.objects.filter(segment__in=segments, tag__high_risk=True).exists()


def required_approvals(notice: Notice, *, reach: int | None = None) -> int:
    """Two distinct approvers for citywide, a large audience or a high-risk audience; else one.

    `reach` is the audience as counted now; without it the count stored at submission (or
    counted here when there is none).
    """
    if notice.tier == Tier.CITYWIDE:
        return 2
    if has_high_risk(notice):
        return 2
    if reach is None:
        reach = notice.reach
    if reach is None:
        reach = true_reach(notice, fresh=False).count
    if reach > int(settings.NOTICES_TWO_APPROVER_AUDIENCE):
        return 2
    return 1


def current_reach(notice: Notice) -> int:
    """What the send reaches now (never from the cache): what an approval acknowledges. For an
    organisation- or department-wide send, every DingTalk member there (notices.preflight)."""
    return true_reach(notice).count


def approval_count(notice: Notice) -> int:
    return Approval.objects.filter(
        notice=notice, version_hash=notice.version_hash, voided_at__isnull=True
    ).count()


def check_approver(actor: Actor, notice: Notice, version_hash: str, *, operation: Operation) -> Any:
    """The checks on an approver ("approve") or a rejecter ("reject") that do not depend on the
    second factor, in the order a person can fix them; returns the person."""
    if actor is None or not actor.is_authenticated:
        raise ApprovalRefused(_("Only a person can approve or reject a notice."), code="no_person")
    if not perms.has_department_perm(actor, perms.APPROVE_NOTICE, notice.department):
        raise ApprovalRefused(
            _("Only supervisors of the notice's department may approve or reject it."),
            code="not_approver",
        )
    cooling = cooling_off_until(actor)
    if cooling is not None:
        raise ApprovalRefused(
            _("Your credentials were reset recently: you may approve again from %(when)s.")
            % {"when": timezone.localtime(cooling).strftime("%Y-%m-%d %H:%M")},
            code="cooling_off",
        )
    if notice.status != Status.SUBMITTED:
        raise ApprovalRefused(
            _("The notice is %(status)s, not waiting for approval.")
            % {"status": notice.get_status_display().lower()},
            code="not_submitted",
        )
    if operation == Operation.APPROVE and version_hash != notice.version_hash:
        raise ApprovalRefused(
            _("The notice changed since you looked at it: review the current version."),
            code="stale_version",
        )
    if operation == Operation.APPROVE and compute_version_hash(notice) != notice.version_hash:
        raise ApprovalRefused(
            _(
                "The audience segments changed after submission: the notice must be submitted again."
            ),
            code="audience_changed",
        )
    if operation == Operation.APPROVE:
        roles = set(
            NoticeContribution.objects.filter(
                notice=notice, version=notice.version, user_id=actor.pk
            ).values_list("kind", flat=True)
        )
        if roles:
            raise ApprovalRefused(
                _("You %(roles)s this version, so you may not approve it.")
                % {"roles": ", ".join(sorted(roles))},
                code="own_work",
            )
        if Approval.objects.filter(
            notice=notice, version_hash=notice.version_hash, approver_id=actor.pk
        ).exists():
            raise ApprovalRefused(
                _("You have already approved this version."), code="already_approved"
            )
    return actor


def _verify_totp(actor: Any, token: str) -> bool:
    token = token.strip().replace(" ", "")
    if not token.isdigit():
        return False
    for device in TOTPDevice.objects.devices_for_user(actor, confirmed=True):
        if device.verify_token(token):
            return True
    return False


def notice_approve(
    *,
    actor: Actor,
    notice: Notice,
    version_hash: str,
    totp_token: str | None = None,
    reach_acknowledged: bool = False,
) -> Notice:
    """Record one approval of the version `version_hash`; the last one needed approves the notice.

    Permission: APPROVE_NOTICE in the notice's department; not a writer, editor or submitter of
    the version; not twice. Second factor: a current TOTP code, or (for a one-approver notice
    only) an OTP-verified web session. Two-approver notices need the code and
    `reach_acknowledged`. Audit: notices.approval_recorded (+ notices.approved); every refusal
    notices.approval_refused. On commit after the final approval: delivery.enqueue.plan_notice,
    which queues the delivery planner (urgent for a citywide or high-risk notice).
    """

    def run() -> Notice:
        current = Notice.objects.select_related("department").get(pk=notice.pk)
        try:
            check_approver(actor, current, version_hash, operation=Operation.APPROVE)
        except ApprovalRefused as exc:
            if exc.code != "audience_changed":
                raise
            # The audience changed behind the services' back (a bulk write, a shell): found by
            # an approver, the notice becomes a new version now, committed before the refusal.
            audience_changed([current.pk], cause={"change": "found at approval"})
            raise ApprovalRefused(
                _("The audience changed since submission: review the new version."),
                code="audience_changed",
            ) from None
        # Counted now, not at submission: recipients imported since then count too.
        reach = current_reach(current)
        current.reach = reach
        needed = required_approvals(current, reach=reach)
        if needed >= 2:
            if not totp_token:
                raise ApprovalRefused(
                    _(
                        "This notice needs two approvers: enter a current code from your authenticator."
                    ),
                    code="totp_required",
                )
            if not reach_acknowledged:
                raise ApprovalRefused(
                    _("Confirm that you understand this notice reaches %(n)s people.")
                    % {"n": f"{current.reach or 0:,}"},
                    code="reach_not_acknowledged",
                )
        totp_ok = False
        if totp_token:
            # Outside the approval's transaction: a wrong code must count against the device's
            # throttle even though the approval itself is refused.
            totp_ok = _verify_totp(actor, totp_token)
            if not totp_ok:
                raise ApprovalRefused(
                    _("The authenticator code is wrong or used."), code="bad_totp"
                )
        elif not current_context().otp_verified:
            raise ApprovalRefused(
                _(
                    "Approving needs a second-factor verified session or a current authenticator code."
                ),
                code="not_verified",
            )
        return _approve_locked(actor, notice, version_hash, totp_ok, reach_acknowledged)

    return run_auditing_refusal(Operation.APPROVE, actor, notice, Action.APPROVAL_REFUSED, run)


@transaction.atomic
def _approve_locked(
    actor: Actor, notice: Notice, version_hash: str, totp_ok: bool, acknowledged: bool
) -> Notice:
    locked = lock_notice(notice)
    # Checked again under the lock: an edit or another approval may have landed meanwhile.
    person = check_approver(actor, locked, version_hash, operation=Operation.APPROVE)
    reach = current_reach(locked)
    needed = required_approvals(locked, reach=reach)
    if needed >= 2 and not (totp_ok and acknowledged):
        # The audience grew past the two-approver threshold since the checks above.
        raise ApprovalRefused(
            _("This notice now needs two approvers: review its reach and approve again."),
            code="reach_grew",
        )
    if reach != locked.reach:
        Notice.objects.filter(pk=locked.pk).update(reach=reach)
        locked.reach = reach
    try:
        with transaction.atomic():
            Approval.objects.create(
                notice=locked,
                version=locked.version,
                version_hash=locked.version_hash,
                approver=person,
                totp_verified=totp_ok,
                reach_acknowledged=acknowledged,
            )
    except IntegrityError as exc:
        raise ApprovalRefused(
            _("You have already approved this version."), code="already_approved"
        ) from exc
    have = approval_count(locked)
    audit_record(
        actor=actor,
        action=Action.APPROVAL_RECORDED,
        target=locked,
        data={
            "version": locked.version,
            "version_hash": locked.version_hash,
            "approvals": have,
            "required": needed,
            "totp": totp_ok,
            "reach_acknowledged": acknowledged,
            "reach": reach,
        },
    )
    if have < needed:
        return locked
    now = timezone.now()
    new_status = Status.SCHEDULED if locked.send_at and locked.send_at > now else Status.APPROVED
    updated = Notice.objects.filter(
        pk=locked.pk, status=Status.SUBMITTED, version_hash=locked.version_hash
    ).update(status=new_status, approved_at=now, approved_reach=reach, status_reason="")
    if updated != 1:
        raise ApprovalRefused(_("The notice changed while approving."), code="stale_version")
    locked.status, locked.approved_at, locked.approved_reach = new_status, now, reach
    audit_record(
        actor=actor,
        action=Action.APPROVED,
        target=locked,
        data={
            "version": locked.version,
            "version_hash": locked.version_hash,
            "status": new_status,
            "approvers": list(
                Approval.objects.filter(
                    notice=locked, version_hash=locked.version_hash, voided_at__isnull=True
                ).values_list("approver__username", flat=True)
            ),
            "send_at": locked.send_at.isoformat() if locked.send_at else None,
        },
    )
    # plan_notice logs a broker failure and returns: the sweeper plans approved notices later.
    transaction.on_commit(lambda: delivery_enqueue.plan_notice(locked.pk, urgent=locked.is_urgent))
    return locked


def notice_get_for_decision(*, actor: Actor, pk: int, operation: Operation) -> Notice:
    """The notice an approve/reject request names, scoped to the actor like any read.

    Another department's notice answers 404 like a missing one, but the attempt is still
    recorded (notices.approval_refused, code not_approver) in that notice's trail.
    """
    return notice_get_visible(
        actor=actor,
        pk=pk,
        operation=operation,
        code="not_approver",
        message="Not a supervisor of the notice's department.",
        action=Action.APPROVAL_REFUSED,
    )
