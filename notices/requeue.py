"""A waiting notice back to the approval queue when what decides who it reaches changed.

An approval binds the version hash, and the hash covers each segment's full definition
(notices.versions.segment_definition). A change to a segment, its members, or a tag, venue or
district it names reaches `audience_changed` below: the audiences services bracket each such
change with audiences.changes, where `watch_segments` listens, and an approval that finds the
hash no longer matching (a change made behind the services' back) calls it too. Every notice
not yet sent that uses it, and whose hash no longer matches, becomes a new version over what it
now stands for, its approvals voided, the reason on the notice, audited
(notices.returned_for_approval), its approvers alerted.

The send-time check that uses the same return is in notices.reapproval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from audit.services import audit_record
from notices import enqueue
from notices.audit_actions import NoticeAuditAction as Action
from notices.guards import lock_notice
from notices.models import Approval, ContributionKind, Notice, Status
from notices.preflight import true_reach
from notices.versions import carry_contributions, compute_version_hash, record_version

# Not sent yet, approvals standing or awaited: a change to the audience returns these.
WAITING_STATUSES = (Status.SUBMITTED, Status.APPROVED, Status.SCHEDULED)

# Stored in English on the notice (status_reason); the pages translate them for the reader.
AUDIENCE_CHANGED = gettext_noop(
    "The audience changed after submission (a segment, its members, or a tag, venue or "
    "district it uses): every approval was voided and the notice waits for approval again."
)


def return_for_approval(locked: Notice, *, code: str, reason: str, data: dict[str, object]) -> int:
    """The locked notice back to the approval queue as a new version over what it now stands
    for: approvals voided, the reason on the notice, audited, approvers alerted on commit.

    Whoever wrote, edited or submitted the previous version is still its contributor and may
    not approve the new one. Returns the approvals voided.
    """
    previous_hash, previous_status, previous = locked.version_hash, locked.status, locked.version
    reach = _count_now(locked)
    now = timezone.now()
    voided = Approval.objects.filter(notice=locked, voided_at__isnull=True).update(voided_at=now)
    locked.version = previous + 1
    locked.status, locked.reach, locked.status_reason = Status.SUBMITTED, reach, reason[:500]
    locked.approved_reach, locked.approved_at = None, None
    Notice.objects.filter(pk=locked.pk).update(
        version=locked.version,
        status=Status.SUBMITTED,
        reach=reach,
        approved_reach=None,
        approved_at=None,
        status_reason=locked.status_reason,
        updated_at=now,
    )
    record_version(locked, None)
    carry_contributions(locked, previous, kinds=tuple(ContributionKind.values))
    audit_record(
        actor=None,
        action=Action.RETURNED_FOR_APPROVAL,
        target=locked,
        department=locked.department,
        data={
            "code": code,
            "reason": reason,
            "version": locked.version,
            "previous_version": previous,
            "previous_version_hash": previous_hash,
            "version_hash": locked.version_hash,
            "previous_status": previous_status,
            "approvals_voided": voided,
            "reach": reach,
            **data,
        },
    )
    notice_id = locked.pk
    transaction.on_commit(lambda: enqueue.alert_approvers(notice_id))
    return voided


def _count_now(notice: Notice) -> int | None:
    """The audience now; None when its segments no longer combine (one moved to another
    department behind the app's back), which the approvers then see as an unknown reach."""
    try:
        return true_reach(notice).count
    except ValueError:
        return None


def audience_changed(notice_ids: Iterable[int], *, cause: dict[str, object]) -> list[int]:
    """Re-check each waiting notice after a change to its audience's definition; those whose
    hash no longer matches go back to the approval queue. Returns their ids.

    Runs inside the transaction of the change, so the change and the voiding commit together.
    """
    returned: list[int] = []
    with transaction.atomic():
        for notice_id in sorted(set(notice_ids)):
            notice = Notice.objects.filter(pk=notice_id, status__in=WAITING_STATUSES).first()
            if notice is None:
                continue
            locked = lock_notice(notice)
            if locked.status not in WAITING_STATUSES:
                continue
            if compute_version_hash(locked) == locked.version_hash:
                continue
            return_for_approval(
                locked, code="audience_changed", reason=AUDIENCE_CHANGED, data={"cause": cause}
            )
            returned.append(notice_id)
    return returned


def notices_using(segment_ids: Iterable[int]) -> list[int]:
    """The waiting notices whose audience includes one of the segments."""
    ids = set(segment_ids)
    if not ids:
        return []
    return list(
        Notice.segments.through.objects.filter(
            segment_id__in=ids, notice__status__in=WAITING_STATUSES
        )
        .values_list("notice_id", flat=True)
        .distinct()
    )


def watch_segments(segment_ids: set[int]) -> Callable[[dict[str, object]], None]:
    """The audiences.changes listener: the notices using the segments are found before the
    change (a deleted segment no longer says who used it) and re-checked after it."""
    notice_ids = notices_using(segment_ids)

    def finish(cause: dict[str, object]) -> None:
        if notice_ids:
            audience_changed(notice_ids, cause=cause)

    return finish
