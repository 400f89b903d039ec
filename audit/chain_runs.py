"""The Chain page's work: what the chain looks like now, and verifications run in the background.

An auditor (VIEW_AUDIT in some department) asks for a verification; it is queued by name
(audit.enqueue.VERIFY_CHAIN_RUN) and run once: a second delivery of the task finds it claimed
or finished and does nothing (a run whose worker died is reclaimed after STALE_AFTER_SECONDS).
The run walks the whole chain (audit.verification), checks every daily anchor against it
(audit.anchors), records the outcome as audit.verified under the auditor's name, and reports
its progress on the row, which the page polls.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.http import Http404
from django.utils import timezone

from accounts import permissions as perms
from audit import enqueue
from audit.actions import AuditOwnAction
from audit.anchors import (
    Anchor,
    AnchorFileError,
    anchor_file_problem,
    anchor_path,
    anchors_verify,
    read_anchors,
)
from audit.models import AuditCheckpoint, AuditEvent, ChainVerification, ExportStatus
from audit.reasons import Reason, reason_english, reason_text
from audit.services import audit_record, chain_head
from audit.verification import chain_verify

STALE_AFTER_SECONDS = 600


@dataclass(frozen=True)
class AnchorState:
    """The newest daily anchor and whether the database still holds its event with its hash."""

    anchor: Anchor | None
    matches: bool | None  # None: no anchor, or its event was purged
    unreadable: Reason | None = None  # why the anchor file cannot be read

    @property
    def problem(self) -> str:
        """Why the anchor file cannot be read, in the active language."""
        return reason_text(*self.unreadable) if self.unreadable else ""


@dataclass(frozen=True)
class ChainState:
    head_sequence: int
    head_hash: str
    anchor: AnchorState
    last: ChainVerification | None  # the newest finished run
    running: ChainVerification | None  # a run waiting or under way


def _may_verify(user: User) -> bool:
    return perms.departments_with_perm(user, perms.VIEW_AUDIT).exists()


def _latest_anchor() -> AnchorState:
    try:
        anchors = read_anchors(anchor_path())
    except (AnchorFileError, OSError) as exc:
        return AnchorState(None, False, anchor_file_problem(exc))
    if not anchors:
        return AnchorState(None, None)
    anchor = max(anchors, key=lambda a: (a.day, a.sequence))
    stored = AuditEvent.objects.filter(sequence=anchor.sequence).values_list("hash", flat=True)
    found = stored.first()
    if found is None:
        purged = AuditCheckpoint.objects.filter(sequence__gte=anchor.sequence).exists()
        return AnchorState(anchor, None if purged else False)
    return AnchorState(anchor, found == anchor.hash)


def chain_state(*, user: User) -> ChainState:
    """The head, the newest anchor and the newest runs (404 for anyone who is not an auditor)."""
    if not _may_verify(user):
        raise Http404("No audit trail here.")
    head_sequence, head_hash = chain_head()
    runs = ChainVerification.objects.select_related("requested_by")
    return ChainState(
        head_sequence=head_sequence,
        head_hash=head_hash,
        anchor=_latest_anchor(),
        last=runs.filter(status__in=[ExportStatus.DONE, ExportStatus.FAILED]).first(),
        running=runs.filter(status__in=[ExportStatus.PENDING, ExportStatus.RUNNING]).first(),
    )


def verification_get(*, user: User, verification_id: str) -> ChainVerification:
    if not _may_verify(user):
        raise Http404("No audit trail here.")
    run = ChainVerification.objects.filter(pk=verification_id).first()
    if run is None:
        raise Http404("No such verification.")
    return run


@transaction.atomic
def verification_start(*, actor: User) -> ChainVerification:
    """Queue a verification of the whole chain; one already waiting or running is reused.

    Permission: VIEW_AUDIT in some department (404 otherwise, as for every audit page).
    The outcome is recorded as audit.verified when the run ends.
    """
    if not _may_verify(actor):
        raise Http404("No audit trail here.")
    stale = timezone.now() - dt.timedelta(seconds=STALE_AFTER_SECONDS)
    current = (
        ChainVerification.objects.select_for_update()
        .filter(
            Q(status=ExportStatus.PENDING, requested_at__gte=stale)
            | Q(status=ExportStatus.RUNNING, heartbeat_at__gte=stale)
        )
        .first()
    )
    if current is not None:
        return current
    run = ChainVerification.objects.create(requested_by=actor)
    run_id = str(run.pk)
    transaction.on_commit(lambda: enqueue.verify_chain_run(run_id))
    return run


def _claim(run_id: str) -> bool:
    now = timezone.now()
    stale = now - dt.timedelta(seconds=STALE_AFTER_SECONDS)
    first_sequence = AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True)
    head_sequence, _hash = chain_head()
    first = first_sequence.first()
    total = head_sequence - first + 1 if first is not None else 0
    claimed = (
        ChainVerification.objects.filter(pk=run_id)
        .filter(
            Q(status=ExportStatus.PENDING) | Q(status=ExportStatus.RUNNING, heartbeat_at__lt=stale)
        )
        .update(status=ExportStatus.RUNNING, heartbeat_at=now, checked=0, total=total)
    )
    return claimed == 1


def verification_run(*, verification_id: str) -> ChainVerification | None:
    """Run one queued verification (nothing if another delivery has it or it is finished)."""
    if not _claim(verification_id):
        return None

    def report(checked: int) -> None:
        ChainVerification.objects.filter(pk=verification_id).update(
            checked=checked, heartbeat_at=timezone.now()
        )

    chain = chain_verify(progress=report)
    reason: Reason = (chain.reason_code, chain.reason_params)
    ok = chain.ok
    if ok:
        try:
            anchors = anchors_verify(read_anchors(anchor_path()))
        except (AnchorFileError, OSError) as exc:
            ok, reason = False, anchor_file_problem(exc)
        else:
            ok, reason = anchors.ok, anchors.reason or ("", {})
    run = ChainVerification.objects.select_related("requested_by").get(pk=verification_id)
    with transaction.atomic():
        run.status = ExportStatus.DONE
        run.ok = ok
        run.checked = chain.checked
        run.head_sequence = chain.head_sequence
        run.head_hash = chain.head_hash or ""
        run.reason_code, run.reason_params = reason
        run.finished_at = timezone.now()
        run.save()
        audit_record(
            actor=run.requested_by,
            action=AuditOwnAction.VERIFIED,
            data={
                "ok": ok,
                "checked": chain.checked,
                "head_sequence": chain.head_sequence,
                "head_hash": chain.head_hash,
                "bad_sequence": chain.bad_sequence,
                "reason": reason_english(*reason),  # the record is hash-chained: one wording
                "verification": str(run.pk),
            },
        )
    return run


def verification_percent(run: ChainVerification) -> int:
    if run.status == ExportStatus.DONE:
        return 100
    return min(99, int(run.checked * 100 / run.total)) if run.total else 0
