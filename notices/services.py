"""Writes for notices: compose, edit, submit, approve, reject, cancel, templates and attachments.

The approval rule lives here and only here, so the pages, the admin, the JSON endpoints and a
shell all meet the same checks:

- an approval is bound to the notice's version hash (everything that is sent, to whom and when);
  any edit makes a new version and voids every approval;
- nobody who wrote, edited or submitted the version may approve it, nor approve it twice (the
  database refuses the duplicate too);
- approvers hold APPROVE_NOTICE in the notice's department and come from an OTP-verified
  session or give a current TOTP code; a two-approver notice always needs a fresh code and the
  acknowledgement of its reach.

Every refusal raises (PermissionDenied or ApplicationError) and is audited after the refused
change has rolled back, so the notice stays as it was while the attempt is on record.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import permissions as perms
from accounts.models import Department
from audiences.models import RiskLevel, Segment
from audit.context import current_context
from audit.services import audit_record
from common.errors import ApplicationError
from common.types import Actor
from dingtalk import messages as dt
from dingtalk.errors import MessageInvalid
from notices import content as nc
from notices.audit_actions import NoticeAuditAction as Action
from notices.models import (
    CANCELLABLE_STATUSES,
    Approval,
    Attachment,
    Classification,
    ContributionKind,
    MessageKind,
    Notice,
    NoticeContribution,
    NoticeTemplate,
    NoticeVersion,
    Rejection,
    Source,
    Status,
    Tier,
)
from notices.preflight import audience_count

logger = logging.getLogger(__name__)


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
)
EDITABLE_FIELDS = frozenset((*CONTENT_FIELDS, "segments"))
HIGH_RISK_TAGS = ("high-risk", "high_risk", "highrisk")


class NoticeInvalid(ApplicationError):  # noqa: N818 - reads as the rule it names
    """The notice's content breaks a rule; `errors` maps form fields to messages."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors = {k: list(v) for k, v in errors.items()}
        first = next(iter(self.errors))
        super().__init__(
            "; ".join(m for msgs in self.errors.values() for m in msgs),
            field=None if first == "__all__" else first,
            code="notice_invalid",
        )


class ApprovalRefused(PermissionDenied):
    """An approval (or rejection) the rule does not allow; `code` names the rule."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TransitionRefused(ApplicationError):  # noqa: N818
    """A status change that is not allowed from the notice's current status."""


# --- hashing and versions ------------------------------------------------------------------


def _segment_definition(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.pk,
        "kind": segment.kind,
        "subscription": segment.subscription,
        "updated_at": segment.updated_at.isoformat(),
        "risk_levels": sorted(segment.risk_levels or []),
        "function_tags": sorted(segment.function_tags or []),
    }


def notice_snapshot(notice: Notice) -> dict[str, Any]:
    """Everything that is sent, to whom and when: the canonical form the version hash covers."""
    attachment = notice.attachment
    segments = sorted(notice.segments.all(), key=lambda s: s.pk) if notice.pk else []
    return {
        "notice": notice.pk,
        "version": notice.version,
        "department": notice.department_id,
        "tier": notice.tier,
        "kind": notice.kind,
        "title_en": notice.title_en,
        "title_zh": notice.title_zh,
        "body_en": notice.body_en,
        "body_zh": notice.body_zh,
        "buttons": notice.buttons,
        "link_url": notice.link_url,
        "link_pic_url": notice.link_pic_url,
        "attachment": None
        if attachment is None
        else {
            "id": attachment.pk,
            "sha256": attachment.sha256,
            "media_type": attachment.media_type,
            "size": attachment.size,
            "duration_s": attachment.duration_s,
        },
        "audience": "citywide"
        if notice.tier == Tier.CITYWIDE
        else [_segment_definition(s) for s in segments],
        "high_risk": notice.high_risk,
        "requires_confirmation": notice.requires_confirmation,
        "reminders": {
            "after_minutes": notice.remind_after_minutes,
            "max": notice.max_reminders,
            "whom": notice.remind_whom,
        },
        "send_at": notice.send_at.isoformat() if notice.send_at else None,
        "expires_at": notice.expires_at.isoformat() if notice.expires_at else None,
        "classification": notice.classification,
    }


def compute_version_hash(notice: Notice) -> str:
    # The notice id and version number are inside, so a hash never recurs: an edit that
    # restores earlier content is still a new version needing new approvals.
    canonical = json.dumps(
        notice_snapshot(notice), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _record_version(notice: Notice, actor: Actor) -> None:
    notice.version_hash = compute_version_hash(notice)
    Notice.objects.filter(pk=notice.pk).update(version_hash=notice.version_hash)
    NoticeVersion.objects.create(
        notice=notice,
        version=notice.version,
        version_hash=notice.version_hash,
        snapshot=notice_snapshot(notice),
        created_by=_person(actor),
    )


def _person(actor: Actor) -> Any:
    return actor if actor is not None and actor.is_authenticated else None


def _contribute(notice: Notice, actor: Actor, kind: str) -> None:
    person = _person(actor)
    if person is not None:
        NoticeContribution.objects.get_or_create(
            notice=notice, version=notice.version, user=person, kind=kind
        )


def _carry_contributions(notice: Notice, from_version: int) -> None:
    """Whoever wrote or edited earlier versions still shaped this one: they may not approve it."""
    for user_id, kind in (
        NoticeContribution.objects.filter(
            notice=notice,
            version=from_version,
            kind__in=[ContributionKind.WROTE, ContributionKind.EDITED],
        )
        .values_list("user_id", "kind")
        .distinct()
    ):
        NoticeContribution.objects.get_or_create(
            notice=notice, version=notice.version, user_id=user_id, kind=kind
        )


def _void_approvals(notice: Notice) -> int:
    return Approval.objects.filter(notice=notice, voided_at__isnull=True).update(
        voided_at=timezone.now()
    )


# --- validation ----------------------------------------------------------------------------


def _check_segments(department: Department, segments: list[Segment]) -> None:
    if any(s.department_id != department.pk for s in segments):
        raise NoticeInvalid({"segments": [_("Choose segments of this department only.")]})


def _validate(notice: Notice, segments: list[Segment], *, now: datetime | None = None) -> None:
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


def _apply_fields(notice: Notice, fields: Mapping[str, Any]) -> list[Segment] | None:
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


# --- refusals ------------------------------------------------------------------------------


def _audit_refusal(
    *, actor: Actor, notice: Notice, operation: str, code: str, message: str, action: str
) -> None:
    current = (
        Notice.objects.filter(pk=notice.pk).values("version", "version_hash", "status").first()
    )
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=action,
            target=notice,
            department=notice.department,
            data={
                "operation": operation,
                "code": code,
                "reason": message,
                "version": current["version"] if current else notice.version,
                "version_hash": current["version_hash"] if current else notice.version_hash,
                "status": current["status"] if current else notice.status,
            },
        )


def _refusing(
    operation: str, actor: Actor, notice: Notice, action: str, run: Callable[[], Notice]
) -> Notice:
    """Run `run`; if it refuses, record the refusal once the refused change has rolled back."""
    try:
        return run()
    except (PermissionDenied, ApplicationError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        code = getattr(exc, "code", None) or "permission_denied"
        _audit_refusal(
            actor=actor,
            notice=notice,
            operation=operation,
            code=str(code),
            message=str(message),
            action=action,
        )
        raise


def _require(actor: Actor, codename: str, department: Department, *, system_ok: bool) -> None:
    if actor is None:
        if system_ok:
            return
        raise PermissionDenied("The system cannot do this; a person must.")
    perms.require_department_perm(actor, codename, department)


def _lock(notice: Notice) -> Notice:
    return (
        Notice.objects.select_for_update(no_key=True, of=("self",))
        .select_related("department", "attachment")
        .get(pk=notice.pk)
    )


# --- compose -------------------------------------------------------------------------------


def notice_create(
    *,
    actor: Actor,
    department: Department,
    source: str = Source.MANUAL,
    template: NoticeTemplate | None = None,
    triggered_at: datetime | None = None,
    external_ref: str = "",
    **fields: Any,
) -> Notice:
    """A draft notice (version 1). Permission: COMPOSE_NOTICE (actor=None: integrations).

    Audit: notices.created (a refused permission: notices.refused on the department). Raises
    NoticeInvalid (field errors) and saves nothing when invalid.
    """
    try:
        return _notice_create(
            actor=actor,
            department=department,
            source=source,
            template=template,
            triggered_at=triggered_at,
            external_ref=external_ref,
            **fields,
        )
    except PermissionDenied as exc:
        with transaction.atomic():
            audit_record(
                actor=actor,
                action=Action.REFUSED,
                target=department,
                department=department,
                data={"operation": "create", "code": "permission_denied", "reason": str(exc)},
            )
        raise


@transaction.atomic
def _notice_create(
    *,
    actor: Actor,
    department: Department,
    source: str = Source.MANUAL,
    template: NoticeTemplate | None = None,
    triggered_at: datetime | None = None,
    external_ref: str = "",
    **fields: Any,
) -> Notice:
    _require(actor, perms.COMPOSE_NOTICE, department, system_ok=True)
    notice = Notice(
        department=department,
        created_by=_person(actor),
        source=source,
        template=template,
        triggered_at=triggered_at,
        external_ref=external_ref,
        tier=fields.get("tier", Tier.TARGETED),
    )
    segments = _apply_fields(notice, fields) or []
    _check_segments(department, segments)
    _validate(notice, segments)
    notice.version_hash = ""
    notice.save()
    notice.segments.set(segments)
    _record_version(notice, actor)
    _contribute(notice, actor, ContributionKind.WROTE)
    audit_record(
        actor=actor,
        action=Action.CREATED,
        target=notice,
        department=department,
        data={
            "version": notice.version,
            "version_hash": notice.version_hash,
            "source": source,
            "tier": notice.tier,
            "template": template.code if template is not None else None,
        },
    )
    return notice


def notice_update(*, actor: Actor, notice: Notice, changes: Mapping[str, Any]) -> Notice:
    """Edit a draft or submitted notice: a new version, new hash, every approval voided.

    Permission: COMPOSE_NOTICE. Status goes back to draft (it must be submitted again).
    Audit: notices.updated; refusals: notices.refused.
    """

    @transaction.atomic
    def run() -> Notice:
        _require(actor, perms.COMPOSE_NOTICE, notice.department, system_ok=True)
        locked = _lock(notice)
        if locked.status not in (Status.DRAFT, Status.SUBMITTED):
            raise TransitionRefused(
                _("A notice that is %(status)s can no longer be edited.")
                % {"status": locked.get_status_display().lower()},
                code="not_editable",
            )
        previous = locked.version
        previous_hash = locked.version_hash
        segments = _apply_fields(locked, changes)
        if segments is None:
            segments = list(locked.segments.all())
        _check_segments(locked.department, segments)
        _validate(locked, segments)
        locked.version = previous + 1
        locked.status = Status.DRAFT
        locked.submitted_at = None
        locked.reach = None
        locked.save()
        locked.segments.set(segments)
        _record_version(locked, actor)
        voided = _void_approvals(locked)
        _carry_contributions(locked, previous)
        _contribute(locked, actor, ContributionKind.EDITED)
        audit_record(
            actor=actor,
            action=Action.UPDATED,
            target=locked,
            data={
                "version": locked.version,
                "version_hash": locked.version_hash,
                "previous_version": previous,
                "previous_hash": previous_hash,
                "approvals_voided": voided,
                "fields": sorted(changes),
            },
        )
        return locked

    return _refusing("update", actor, notice, Action.REFUSED, run)


def notice_submit(*, actor: Actor, notice: Notice) -> Notice:
    """Draft -> submitted, after a full check including a non-empty audience.

    Permission: COMPOSE_NOTICE (actor=None: the system submits for an integration).
    Audit: notices.submitted. On commit: the department's approvers are alerted.
    """

    @transaction.atomic
    def run() -> Notice:
        _require(actor, perms.COMPOSE_NOTICE, notice.department, system_ok=True)
        locked = _lock(notice)
        if locked.status != Status.DRAFT:
            raise TransitionRefused(
                _("Only a draft can be submitted; this notice is %(status)s.")
                % {"status": locked.get_status_display().lower()},
                code="not_draft",
            )
        segments = list(locked.segments.all())
        _validate(locked, segments)
        if compute_version_hash(locked) != locked.version_hash:
            # A segment was redefined since this version was saved: what is submitted is a
            # new version, so nothing approved earlier can carry over to it.
            previous = locked.version
            locked.version = previous + 1
            locked.save(update_fields=["version", "updated_at"])
            _record_version(locked, actor)
            _void_approvals(locked)
            _carry_contributions(locked, previous)
        reach = audience_count(locked.department, locked.tier, segments, fresh=True).count
        if reach == 0:
            raise NoticeInvalid(
                {"segments": [_("The audience is empty: nobody would receive it.")]}
            )
        now = timezone.now()
        Notice.objects.filter(pk=locked.pk).update(
            status=Status.SUBMITTED, submitted_at=now, reach=reach
        )
        locked.status, locked.submitted_at, locked.reach = Status.SUBMITTED, now, reach
        _contribute(locked, actor, ContributionKind.SUBMITTED)
        audit_record(
            actor=actor,
            action=Action.SUBMITTED,
            target=locked,
            data={
                "version": locked.version,
                "version_hash": locked.version_hash,
                "reach": reach,
                "required_approvals": required_approvals(locked),
            },
        )
        from notices.tasks import alert_approvers_task

        notice_id = locked.pk
        transaction.on_commit(lambda: alert_approvers_task.delay(notice_id))
        return locked

    return _refusing("submit", actor, notice, Action.REFUSED, run)


# --- approval ------------------------------------------------------------------------------


def _has_high_risk(notice: Notice) -> bool:
    if notice.high_risk:
        return True
    if notice.tier == Tier.CITYWIDE:
        return False
    segments = list(notice.segments.all())
    if any(RiskLevel.HIGH in (s.risk_levels or []) for s in segments):
        return True
    # A department's free tags may mark a high-risk group too ("high-risk", "high_risk").
    return Segment.tags.through.objects.filter(
        segment__in=segments, tag__name__in=HIGH_RISK_TAGS
    ).exists()


def required_approvals(notice: Notice) -> int:
    """Two distinct approvers for citywide, a large audience or a high-risk audience; else one."""
    if notice.tier == Tier.CITYWIDE:
        return 2
    if _has_high_risk(notice):
        return 2
    reach = notice.reach
    if reach is None:
        reach = audience_count(notice.department, notice.tier, notice.segments.all()).count
    if reach > int(settings.NOTICES_TWO_APPROVER_AUDIENCE):
        return 2
    return 1


def approval_count(notice: Notice) -> int:
    return Approval.objects.filter(
        notice=notice, version_hash=notice.version_hash, voided_at__isnull=True
    ).count()


def _check_approver(actor: Actor, notice: Notice, version_hash: str, *, operation: str) -> Any:
    """The checks that do not depend on the second factor, in the order a person can fix them."""
    if actor is None or not actor.is_authenticated:
        raise ApprovalRefused(_("Only a person can approve or reject a notice."), code="no_person")
    if not perms.has_department_perm(actor, perms.APPROVE_NOTICE, notice.department):
        raise ApprovalRefused(
            _("Only supervisors of the notice's department may approve or reject it."),
            code="not_approver",
        )
    if notice.status != Status.SUBMITTED:
        raise ApprovalRefused(
            _("The notice is %(status)s, not waiting for approval.")
            % {"status": notice.get_status_display().lower()},
            code="not_submitted",
        )
    if operation == "approve" and version_hash != notice.version_hash:
        raise ApprovalRefused(
            _("The notice changed since you looked at it: review the current version."),
            code="stale_version",
        )
    if operation == "approve" and compute_version_hash(notice) != notice.version_hash:
        raise ApprovalRefused(
            _(
                "The audience segments changed after submission: the notice must be submitted again."
            ),
            code="audience_changed",
        )
    if operation == "approve":
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


def _on_approved(notice_id: int) -> None:
    path = getattr(settings, "NOTICES_ON_APPROVED", "")
    if not path:
        return
    try:
        callback = import_string(path)
    except ImportError:
        logger.warning(
            "NOTICES_ON_APPROVED %s is not importable; notice %s waits.", path, notice_id
        )
        return
    callback(notice_id)


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
    notices.approval_refused. On commit after the final approval: NOTICES_ON_APPROVED(notice_id).
    """

    def run() -> Notice:
        current = Notice.objects.select_related("department").get(pk=notice.pk)
        _check_approver(actor, current, version_hash, operation="approve")
        needed = required_approvals(current)
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

    return _refusing("approve", actor, notice, Action.APPROVAL_REFUSED, run)


@transaction.atomic
def _approve_locked(
    actor: Actor, notice: Notice, version_hash: str, totp_ok: bool, acknowledged: bool
) -> Notice:
    locked = _lock(notice)
    # Checked again under the lock: an edit or another approval may have landed meanwhile.
    person = _check_approver(actor, locked, version_hash, operation="approve")
    needed = required_approvals(locked)
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
        },
    )
    if have < needed:
        return locked
    now = timezone.now()
    new_status = Status.SCHEDULED if locked.send_at and locked.send_at > now else Status.APPROVED
    updated = Notice.objects.filter(
        pk=locked.pk, status=Status.SUBMITTED, version_hash=locked.version_hash
    ).update(status=new_status, approved_at=now)
    if updated != 1:
        raise ApprovalRefused(_("The notice changed while approving."), code="stale_version")
    locked.status, locked.approved_at = new_status, now
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
    notice_id = locked.pk
    transaction.on_commit(lambda: _on_approved(notice_id))
    return locked


def notice_reject(*, actor: Actor, notice: Notice, reason: str) -> Notice:
    """Submitted -> draft with a reason; a new version, so resubmission needs fresh approvals.

    Permission: APPROVE_NOTICE in the notice's department. Audit: notices.rejected.
    """

    @transaction.atomic
    def run() -> Notice:
        locked = _lock(notice)
        person = _check_approver(actor, locked, locked.version_hash, operation="reject")
        text = (reason or "").strip()
        if not text:
            raise ApplicationError(
                _("Give the reason for rejecting."), field="reason", code="reason_required"
            )
        Rejection.objects.create(
            notice=locked,
            version=locked.version,
            version_hash=locked.version_hash,
            by=person,
            reason=text,
        )
        rejected_hash, previous = locked.version_hash, locked.version
        voided = _void_approvals(locked)
        locked.version = previous + 1
        locked.status = Status.DRAFT
        locked.status_reason = text[:500]
        locked.submitted_at = None
        locked.reach = None
        locked.save()
        _record_version(locked, actor)
        _carry_contributions(locked, previous)
        audit_record(
            actor=actor,
            action=Action.REJECTED,
            target=locked,
            data={
                "version": previous,
                "version_hash": rejected_hash,
                "new_version": locked.version,
                "new_version_hash": locked.version_hash,
                "reason": text,
                "approvals_voided": voided,
            },
        )
        return locked

    return _refusing("reject", actor, notice, Action.APPROVAL_REFUSED, run)


def notice_cancel(*, actor: Actor, notice: Notice, reason: str) -> Notice:
    """Cancel a notice before it starts sending. Permission: COMPOSE_NOTICE or APPROVE_NOTICE.

    The status moves with a conditional update, so a dispatcher that has already claimed the
    notice (sending) wins and the cancel is refused. Audit: notices.cancelled.
    """

    @transaction.atomic
    def run() -> Notice:
        if actor is not None and not (
            perms.has_department_perm(actor, perms.COMPOSE_NOTICE, notice.department)
            or perms.has_department_perm(actor, perms.APPROVE_NOTICE, notice.department)
        ):
            raise PermissionDenied(
                _("Only the department's PR officers and supervisors may cancel.")
            )
        text = (reason or "").strip()
        if not text:
            raise ApplicationError(
                _("Give the reason for cancelling."), field="reason", code="reason_required"
            )
        updated = Notice.objects.filter(pk=notice.pk, status__in=CANCELLABLE_STATUSES).update(
            status=Status.CANCELLED, status_reason=text[:500], updated_at=timezone.now()
        )
        locked = Notice.objects.select_related("department").get(pk=notice.pk)
        if updated != 1:
            raise TransitionRefused(
                _("A notice that is %(status)s cannot be cancelled.")
                % {"status": locked.get_status_display().lower()},
                code="not_cancellable",
            )
        audit_record(
            actor=actor,
            action=Action.CANCELLED,
            target=locked,
            data={"version": locked.version, "version_hash": locked.version_hash, "reason": text},
        )
        return locked

    return _refusing("cancel", actor, notice, Action.REFUSED, run)


# --- templates -----------------------------------------------------------------------------


def template_placeholders(template: NoticeTemplate) -> list[str]:
    texts = [
        template.title_en,
        template.title_zh,
        template.body_en,
        template.body_zh,
        template.link_url,
    ]
    for button in template.buttons or []:
        texts += [str(button.get(k) or "") for k in ("title_en", "title_zh", "url")]
    return nc.placeholders_in(texts)


def template_fill(template: NoticeTemplate, values: Mapping[str, str]) -> dict[str, Any]:
    """The template's notice fields with every placeholder filled; NoticeInvalid names the missing."""
    names = template_placeholders(template)
    clean = {k: str(v).strip() for k, v in values.items() if v is not None}
    missing = [n for n in names if not clean.get(n)]
    if missing:
        raise NoticeInvalid(
            {
                f"value_{n}": [_("Fill in the placeholder {%(name)s}.") % {"name": n}]
                for n in missing
            }
        )

    def fill(text: str) -> str:
        return nc.fill_placeholders(text, clean)

    return {
        "tier": template.tier,
        "kind": template.kind,
        "title_en": fill(template.title_en),
        "title_zh": fill(template.title_zh),
        "body_en": fill(template.body_en),
        "body_zh": fill(template.body_zh),
        "buttons": [
            {k: fill(str(b.get(k) or "")) for k in ("title_en", "title_zh", "url")}
            for b in template.buttons or []
        ],
        "link_url": fill(template.link_url),
        "requires_confirmation": template.requires_confirmation,
        "remind_after_minutes": template.remind_after_minutes,
        "max_reminders": template.max_reminders,
        "remind_whom": template.remind_whom,
        "classification": template.classification,
    }


def notice_create_from_template(
    *,
    actor: Actor,
    template: NoticeTemplate,
    department: Department,
    values: dict[str, str],
    overrides: Mapping[str, Any] | None = None,
    source: str = Source.TEMPLATE,
    triggered_at: datetime | None = None,
    submit: bool = False,
    external_ref: str = "",
) -> Notice:
    """A notice from a template; every placeholder must be filled (NoticeInvalid otherwise).

    With actor=None (an integration) and submit=True the system is the author and submitter,
    so any supervisor of the department may approve. `overrides` may set any editable field
    (segments, send_at, ...). Expiry comes from the template's expires_after_minutes unless given.
    """
    if template.department_id != department.pk:
        raise PermissionDenied(_("The template belongs to another department."))
    if not template.is_active:
        raise ApplicationError(_("This template is switched off."), code="template_inactive")
    fields = template_fill(template, values)
    fields.update(overrides or {})
    if template.expires_after_minutes and "expires_at" not in (overrides or {}):
        start = fields.get("send_at") or timezone.now()
        fields["expires_at"] = start + timedelta(minutes=template.expires_after_minutes)
    with transaction.atomic():
        notice = notice_create(
            actor=actor,
            department=department,
            source=source,
            template=template,
            triggered_at=triggered_at,
            external_ref=external_ref,
            **fields,
        )
    if submit:
        notice = notice_submit(actor=actor, notice=notice)
    return notice


@transaction.atomic
def templates_seed(*, actor: Actor, department: Department) -> list[NoticeTemplate]:
    """Create or refresh the predefined templates (rainstorm warnings; water outage for WSD).

    Permission: ADMINISTER_DEPARTMENT (actor=None: migrations and commands). Idempotent.
    Audit: notices.templates_seeded.
    """
    from notices.seed import default_templates

    _require(actor, perms.ADMINISTER_DEPARTMENT, department, system_ok=True)
    saved: list[NoticeTemplate] = []
    for spec in default_templates(department.code):
        code = spec.pop("code")
        template, _created = NoticeTemplate.objects.update_or_create(
            department=department, code=code, defaults=spec
        )
        saved.append(template)
    audit_record(
        actor=actor,
        action=Action.TEMPLATES_SEEDED,
        target=department,
        department=department,
        data={"templates": [t.code for t in saved]},
    )
    return saved


# --- attachments ---------------------------------------------------------------------------


@transaction.atomic
def attachment_upload(
    *,
    actor: Actor,
    department: Department,
    media_type: str,
    upload: UploadedFile,
    duration_s: int | None = None,
) -> Attachment:
    """Store an image, file or voice clip after checking type, extension and size.

    Permission: COMPOSE_NOTICE. Audit: notices.attachment_uploaded. NoticeInvalid on bad input.
    """
    _require(actor, perms.COMPOSE_NOTICE, department, system_ok=True)
    name = upload.name or "upload"
    size = int(upload.size or 0)
    if media_type not in (MessageKind.IMAGE, MessageKind.FILE, MessageKind.VOICE):
        raise NoticeInvalid({"attachment": [_("Attach an image, a file or a voice clip.")]})
    try:
        dt.validate_media_upload(media_type, name, size)
    except MessageInvalid as exc:
        raise NoticeInvalid({"attachment": [exc.problem]}) from exc
    if media_type == MessageKind.FILE and size > dt.MAX_FILE_MESSAGE_BYTES:
        raise NoticeInvalid(
            {
                "attachment": [
                    _("A file message may carry at most %(n)s bytes.")
                    % {"n": f"{dt.MAX_FILE_MESSAGE_BYTES:,}"}
                ]
            }
        )
    if size > int(settings.NOTICES_MAX_ATTACHMENT_BYTES):
        raise NoticeInvalid(
            {
                "attachment": [
                    _("Attachments are limited to %(n)s bytes.")
                    % {"n": f"{int(settings.NOTICES_MAX_ATTACHMENT_BYTES):,}"}
                ]
            }
        )
    if media_type == MessageKind.VOICE and not (
        duration_s and 0 < duration_s < dt.MAX_VOICE_SECONDS
    ):
        raise NoticeInvalid(
            {
                "attachment": [
                    _("Give the voice clip's length, 1 to %(n)d seconds.")
                    % {"n": dt.MAX_VOICE_SECONDS - 1}
                ]
            }
        )
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    attachment = Attachment(
        department=department,
        media_type=media_type,
        original_name=name[:255],
        size=size,
        sha256=digest.hexdigest(),
        duration_s=duration_s if media_type == MessageKind.VOICE else None,
        uploaded_by=_person(actor),
    )
    attachment.file.save(name, upload, save=False)
    attachment.save()
    audit_record(
        actor=actor,
        action=Action.ATTACHMENT_UPLOADED,
        target=attachment,
        department=department,
        data={"name": name, "size": size, "sha256": attachment.sha256, "media_type": media_type},
    )
    return attachment


def content_summary(notice: Notice) -> dict[str, Any]:
    """Sizes per language against DingTalk's limits (the detail page and the JSON endpoint)."""
    content = nc.content_from_notice(notice)
    return {lang: asdict(nc.language_stats(content, lang)) for lang in content.languages()}


def segments_for(notice: Notice) -> Iterable[Segment]:
    return notice.segments.all()


def notice_save(
    *,
    actor: Actor,
    department: Department,
    fields: dict[str, Any],
    notice: Notice | None = None,
    upload: UploadedFile | None = None,
    duration_s: int | None = None,
) -> Notice:
    """Create or edit a notice from the compose page, storing a new attachment with it.

    One transaction: a notice that fails validation leaves no attachment row behind. A
    refusal is audited after that transaction has rolled back.
    """
    fields = dict(fields)
    if notice is not None and upload is None and "attachment" not in fields:
        fields["attachment"] = notice.attachment
    if fields.get("kind") not in (MessageKind.IMAGE, MessageKind.FILE, MessageKind.VOICE):
        fields["attachment"] = None
        upload = None
    if upload is None:
        if notice is None:
            return notice_create(actor=actor, department=department, **fields)
        return notice_update(actor=actor, notice=notice, changes=fields)
    try:
        with transaction.atomic():
            fields["attachment"] = attachment_upload(
                actor=actor,
                department=department,
                media_type=str(fields.get("kind", "")),
                upload=upload,
                duration_s=duration_s,
            )
            if notice is None:
                return _notice_create(actor=actor, department=department, **fields)
            return notice_update(actor=actor, notice=notice, changes=fields)
    except (PermissionDenied, ApplicationError) as exc:
        if isinstance(exc, NoticeInvalid):
            raise
        message = str(getattr(exc, "message", None) or exc)
        code = str(getattr(exc, "code", None) or "permission_denied")
        if notice is not None:
            _audit_refusal(
                actor=actor,
                notice=notice,
                operation="update",
                code=code,
                message=message,
                action=Action.REFUSED,
            )
        else:
            with transaction.atomic():
                audit_record(
                    actor=actor,
                    action=Action.REFUSED,
                    target=department,
                    department=department,
                    data={"operation": "create", "code": code, "reason": message},
                )
        raise


def notice_get_for_decision(*, actor: Actor, pk: int, operation: str) -> Notice:
    """The notice an approve/reject request names, scoped to the actor like any read.

    Another department's notice answers 404 like a missing one, but the attempt is still
    recorded (notices.approval_refused, code not_approver) in that notice's trail.
    """
    from django.http import Http404

    from notices.selectors import notice_get_for_user

    try:
        return notice_get_for_user(user=actor if actor is not None else AnonymousUser(), pk=pk)
    except Http404:
        hidden = Notice.objects.select_related("department").filter(pk=pk).first()
        if hidden is not None:
            _audit_refusal(
                actor=actor,
                notice=hidden,
                operation=operation,
                code="not_approver",
                message="Not a supervisor of the notice's department.",
                action=Action.APPROVAL_REFUSED,
            )
        raise
