"""Cancellations a CAP Cancel asks for: cancel what has not gone out, ask a supervisor to recall the rest.

A notice still waiting (draft, submitted, approved, scheduled) is cancelled at once. A notice
that has reached people is left as it is, and a CancellationRequest waits for a supervisor
to confirm (the delivery engine's recall) or dismiss it.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from accounts import permissions as perms
from audit.services import audit_record
from common.errors import ApplicationError
from delivery.services.followup import notice_recall
from integrations.audit_actions import IntegrationAuditAction as Action
from integrations.cap import CapAlert
from integrations.errors import TriggerRefused
from integrations.models import (
    CancellationRequest,
    CancellationState,
    Integration,
    Trigger,
    TriggerSource,
)
from notices.models import CANCELLABLE_STATUSES, Notice, Status
from notices.services import notice_cancel

# Notices in these states have reached people: a CAP Cancel asks a supervisor to recall them.
RECALLABLE_STATUSES = frozenset(
    {Status.SENDING, Status.PAUSED, Status.SENT, Status.SENT_WITH_FAILURES}
)


def cancellations_request(
    integration: Integration, alert: CapAlert, now: dt.datetime
) -> list[CancellationRequest]:
    """Act on each notice the Cancel's references prepared here; one request recorded per notice.

    Only notices this same integration prepared, from the alerts the Cancel references (sender
    and identifier): another integration of the department cannot cancel them. Runs inside the
    CAP intake's transaction. Refuses a Cancel that references nothing here.
    Audit: integrations.cancellation_requested per notice (and notices' own cancel audit).
    """
    keys = [f"{sender} {identifier}" for sender, identifier, _sent in alert.references]
    originals = list(
        Trigger.objects.select_related("notice")
        .filter(
            integration=integration,
            department=integration.department,
            source=TriggerSource.CAP,
            key__in=keys,
            notice__isnull=False,
        )
        .order_by("pk")
    )
    if not originals:
        raise TriggerRefused(
            422,
            "unknown_reference",
            "The Cancel references no alert that prepared a notice here.",
        )
    requests = []
    for original in originals:
        notice = Notice.objects.select_for_update(no_key=True).get(trigger=original)
        reason = f"CAP Cancel {alert.identifier} from {alert.sender}"[:500]
        if notice.status in CANCELLABLE_STATUSES:
            notice_cancel(actor=None, notice=notice, reason=reason)
            state = CancellationState.CANCELLED
        elif notice.status in RECALLABLE_STATUSES:
            state = CancellationState.AWAITING_CONFIRMATION
        else:
            state = CancellationState.NOTHING_TO_DO
        cancellation = CancellationRequest.objects.create(
            trigger=original,
            notice=notice,
            cancel_key=alert.key,
            state=state,
            reason=reason,
            requested_at=now,
        )
        audit_record(
            actor=None,
            actor_label=f"integration:{integration.slug}",
            action=Action.CANCELLATION_REQUESTED,
            target=cancellation,
            department=integration.department,
            data={"notice_id": notice.pk, "notice_status": notice.status, "state": state},
        )
        requests.append(cancellation)
    return requests


def cancellation_decide(
    *, actor: User, cancellation: CancellationRequest, confirm: bool
) -> CancellationRequest:
    """A supervisor recalls the notice a CAP Cancel asked to withdraw, or dismisses the request.

    Permission: recall_notice in the notice's department. Confirming calls the delivery
    engine's recall (its own checks, 24-hour window and audit) before the request is marked.
    Audit: integrations.cancellation_confirmed / _dismissed.
    """
    current = CancellationRequest.objects.select_related("notice__department").get(
        pk=cancellation.pk
    )
    perms.require_department_perm(actor, perms.RECALL_NOTICE, current.notice.department)
    if current.state != CancellationState.AWAITING_CONFIRMATION:
        raise ApplicationError("This request was already decided.", code="already_decided")
    if confirm:
        # Outside our transaction: the recall commits (and queues its DingTalk calls) on its own.
        notice_recall(actor=actor, notice=current.notice, reason=current.reason)
    with transaction.atomic():
        moved = CancellationRequest.objects.filter(
            pk=current.pk, state=CancellationState.AWAITING_CONFIRMATION
        ).update(
            state=CancellationState.CONFIRMED if confirm else CancellationState.DISMISSED,
            decided_by=actor,
            decided_at=timezone.now(),
        )
        if moved != 1:
            raise ApplicationError("This request was already decided.", code="already_decided")
        current.refresh_from_db()
        audit_record(
            actor=actor,
            action=Action.CANCELLATION_CONFIRMED if confirm else Action.CANCELLATION_DISMISSED,
            target=current,
            department=current.notice.department,
            data={"notice_id": current.notice_id},
        )
    return current
