"""Writes for a notice's life before delivery: compose (create, update, save with an attachment),
submit, reject and cancel.

The approval rule and notice_approve are in notices.approval, versions and their hash in
notices.versions, templates in notices.templating, attachments in notices.attachments. Every
refusal raises (PermissionDenied or ApplicationError) and is audited after the refused change
has rolled back, so the notice stays as it was while the attempt is on record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import permissions as perms
from accounts.models import Department
from audit.context import current_context
from audit.services import audit_record
from common.errors import ApplicationError
from common.types import Actor
from notices import enqueue
from notices.approval import check_approver, required_approvals
from notices.attachments import attachment_upload
from notices.audit_actions import NoticeAuditAction as Action
from notices.audit_actions import NoticeOperation as Operation
from notices.errors import NoticeInvalid, TransitionRefused
from notices.guards import (
    acting_person,
    audit_refusal,
    lock_notice,
    notice_get_visible,
    require_perm,
    run_auditing_refusal,
)
from notices.models import (
    CANCELLABLE_STATUSES,
    ContributionKind,
    MessageKind,
    Notice,
    NoticeTemplate,
    Rejection,
    Source,
    Status,
    Tier,
)
from notices.preflight import true_reach
from notices.validation import apply_fields, check_segments, validate_notice
from notices.versions import (
    carry_contributions,
    compute_version_hash,
    record_contribution,
    record_version,
    void_approvals,
)
from notices.voice_clips import voice_apply

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
                data={
                    "operation": Operation.CREATE,
                    "code": "permission_denied",
                    "reason": str(exc),
                },
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
    require_perm(actor, perms.COMPOSE_NOTICE, department, system_ok=True)
    notice = Notice(
        department=department,
        created_by=acting_person(actor),
        source=source,
        template=template,
        triggered_at=triggered_at,
        external_ref=external_ref,
        tier=fields.get("tier", Tier.TARGETED),
    )
    segments = apply_fields(notice, fields) or []
    voice_apply(actor, notice)
    check_segments(department, segments)
    validate_notice(notice, segments)
    notice.version_hash = ""
    notice.save()
    notice.segments.set(segments)
    record_version(notice, actor)
    record_contribution(notice, actor, ContributionKind.WROTE)
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
        require_perm(actor, perms.COMPOSE_NOTICE, notice.department, system_ok=True)
        locked = lock_notice(notice)
        if locked.status not in (Status.DRAFT, Status.SUBMITTED):
            raise TransitionRefused(
                _("A notice that is %(status)s can no longer be edited.")
                % {"status": locked.get_status_display().lower()},
                code="not_editable",
            )
        previous = locked.version
        previous_hash = locked.version_hash
        segments = apply_fields(locked, changes)
        voice_apply(actor, locked)
        if segments is None:
            segments = list(locked.segments.all())
        check_segments(locked.department, segments)
        validate_notice(locked, segments)
        locked.version = previous + 1
        locked.status = Status.DRAFT
        locked.submitted_at = None
        locked.reach = None
        locked.save()
        locked.segments.set(segments)
        record_version(locked, actor)
        voided = void_approvals(locked)
        carry_contributions(locked, previous)
        record_contribution(locked, actor, ContributionKind.EDITED)
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

    return run_auditing_refusal(Operation.UPDATE, actor, notice, Action.REFUSED, run)


def notice_submit(*, actor: Actor, notice: Notice) -> Notice:
    """Draft -> submitted, after a full check including a non-empty audience.

    Permission: COMPOSE_NOTICE (actor=None: the system submits for an integration).
    Audit: notices.submitted. On commit: the department's approvers are alerted.
    """

    @transaction.atomic
    def run() -> Notice:
        require_perm(actor, perms.COMPOSE_NOTICE, notice.department, system_ok=True)
        locked = lock_notice(notice)
        if locked.status != Status.DRAFT:
            raise TransitionRefused(
                _("Only a draft can be submitted; this notice is %(status)s.")
                % {"status": locked.get_status_display().lower()},
                code="not_draft",
            )
        segments = list(locked.segments.all())
        validate_notice(locked, segments)
        if compute_version_hash(locked) != locked.version_hash:
            # A segment was redefined since this version was saved: what is submitted is a
            # new version, so nothing approved earlier can carry over to it.
            previous = locked.version
            locked.version = previous + 1
            locked.save(update_fields=["version", "updated_at"])
            record_version(locked, actor)
            void_approvals(locked)
            carry_contributions(locked, previous)
        reach = true_reach(locked).count
        if reach == 0:
            raise NoticeInvalid(
                {"segments": [_("The audience is empty: nobody would receive it.")]}
            )
        now = timezone.now()
        Notice.objects.filter(pk=locked.pk).update(
            status=Status.SUBMITTED, submitted_at=now, reach=reach
        )
        locked.status, locked.submitted_at, locked.reach = Status.SUBMITTED, now, reach
        record_contribution(locked, actor, ContributionKind.SUBMITTED)
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
        notice_id = locked.pk
        transaction.on_commit(lambda: enqueue.alert_approvers(notice_id))
        return locked

    return run_auditing_refusal(Operation.SUBMIT, actor, notice, Action.REFUSED, run)


def notice_reject(*, actor: Actor, notice: Notice, reason: str) -> Notice:
    """Submitted -> draft with a reason; a new version, so resubmission needs fresh approvals.

    Permission: APPROVE_NOTICE in the notice's department. Audit: notices.rejected.
    """

    @transaction.atomic
    def run() -> Notice:
        locked = lock_notice(notice)
        person = check_approver(actor, locked, locked.version_hash, operation=Operation.REJECT)
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
        voided = void_approvals(locked)
        locked.version = previous + 1
        locked.status = Status.DRAFT
        locked.status_reason = text[:500]
        locked.submitted_at = None
        locked.reach = None
        locked.save()
        record_version(locked, actor)
        carry_contributions(locked, previous)
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

    return run_auditing_refusal(Operation.REJECT, actor, notice, Action.APPROVAL_REFUSED, run)


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

    return run_auditing_refusal(Operation.CANCEL, actor, notice, Action.REFUSED, run)


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
    if fields.get("voice_from_text"):
        fields["kind"] = MessageKind.VOICE  # the clip is made from the text (voice_apply)
        upload = None
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
            audit_refusal(
                actor=actor,
                notice=notice,
                operation=Operation.UPDATE,
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
                    data={"operation": Operation.CREATE, "code": code, "reason": message},
                )
        raise


def notice_get_for_change(*, actor: Actor, pk: int, operation: Operation) -> Notice:
    """The notice a page means to edit, submit or cancel, refused before any service runs when
    the actor may not see it (Http404, like a missing one) or may not compose in its department
    (PermissionDenied). Either refusal is recorded (notices.refused) in that notice's trail, with
    the path the request came by."""
    notice = notice_get_visible(
        actor=actor,
        pk=pk,
        operation=operation,
        code="not_visible",
        message="The notice belongs to a department the actor may not see.",
        action=Action.REFUSED,
    )
    if operation == Operation.UPDATE and not perms.has_department_perm(
        actor, perms.COMPOSE_NOTICE, notice.department
    ):
        audit_refusal(
            actor=actor,
            notice=notice,
            operation=operation,
            code="not_composer",
            message="Only PR officers of the notice's department may edit it.",
            action=Action.REFUSED,
        )
        raise PermissionDenied("Only PR officers of the notice's department may edit it.")
    return notice


def compose_refused(*, actor: Actor, code: str) -> None:
    """Record a refused compose page (the department unknown or not the actor's to write in)."""
    department = Department.objects.filter(code=code).first()
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=Action.REFUSED,
            target_label=f"department {code}"[:200],
            department=department,
            data={
                "operation": Operation.CREATE,
                "code": "not_composer",
                "reason": "No compose permission in this department.",
                "path": current_context().path or "service",
            },
        )
