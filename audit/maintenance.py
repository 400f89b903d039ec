"""The trail's own maintenance: record a verification of the chain, and purge old events.

Both read the chain (audit.verification) and then append to it (audit.services), so they live
here, above both: verification never writes, and audit_record never verifies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pgtrigger
from django.db import connection, transaction
from django.utils import timezone

from audit.actions import AuditOwnAction
from audit.chain import lock_chain
from audit.checks import retention_days
from audit.models import AuditCheckpoint, AuditEvent
from audit.services import audit_record
from audit.verification import ChainReport, chain_verify
from common.errors import ApplicationError


def chain_verify_and_record(*, actor_label: str) -> ChainReport:
    """Verify the chain, then append an audit.verified event with the outcome and the head.

    Running it twice records two verifications, which is what happened; it changes nothing else.
    """
    report = chain_verify()
    audit_record(
        actor=None,
        action=AuditOwnAction.VERIFIED,
        actor_label=actor_label,
        data={
            "ok": report.ok,
            "checked": report.checked,
            "head_sequence": report.head_sequence,
            "head_hash": report.head_hash,
            "bad_sequence": report.bad_sequence,
            "reason": report.reason,
        },
    )
    return report


@dataclass(frozen=True)
class PurgeResult:
    cutoff: dt.datetime
    deleted: int
    checkpoint: AuditCheckpoint | None
    event: AuditEvent


def purge_cutoff(before: dt.date) -> dt.datetime:
    """Midnight (local time) at the start of `before`, refused if it lies inside the retention period."""
    cutoff = timezone.make_aware(dt.datetime.combine(before, dt.time.min))
    earliest_allowed = timezone.now() - dt.timedelta(days=retention_days())
    if cutoff > earliest_allowed:
        raise ApplicationError(
            f"Refusing to purge events from before {before.isoformat()}: events are kept "
            f"{retention_days()} days, so the latest date allowed is "
            f"{timezone.localdate(earliest_allowed).isoformat()}.",
            field="before",
            code="inside_retention",
        )
    return cutoff


@transaction.atomic
def events_purge(*, before: dt.date, actor_label: str = "system (audit_purge)") -> PurgeResult:
    """Delete every event older than `before` (a prefix of the chain) and leave a checkpoint.

    Permission: a management command only (actor is the system). Audit: audit.purged.
    Refuses dates inside the retention period, and refuses to purge a prefix that does not
    verify, so a purge never destroys the evidence of tampering.
    """
    cutoff = purge_cutoff(before)
    lock_chain()
    # The purged part must be a prefix of the chain: stop before the first event at or after
    # the cutoff, even if a clock step put an older timestamp further on.
    first_kept = (
        AuditEvent.objects.filter(occurred_at__gte=cutoff)
        .order_by("sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    prefix = (
        AuditEvent.objects.all()
        if first_kept is None
        else AuditEvent.objects.filter(sequence__lt=first_kept)
    )
    last = prefix.order_by("-sequence").values_list("sequence", "hash").first()
    checkpoint = None
    deleted = 0
    if last is not None:
        report = chain_verify(up_to=last[0])
        if not report.ok:
            raise ApplicationError(
                f"Refusing to purge a chain that does not verify: {report.message}"
            )
        checkpoint = AuditCheckpoint.objects.create(
            sequence=last[0], hash=last[1], purged_before=cutoff, events_deleted=prefix.count()
        )
        # The one sanctioned bypass of the append-only trigger, inside this transaction only.
        with pgtrigger.ignore("audit.AuditEvent:append_only"):
            deleted, _ = prefix.delete()
    event = audit_record(
        actor=None,
        action=AuditOwnAction.PURGED,
        actor_label=actor_label,
        data={
            "before": before.isoformat(),
            "cutoff": cutoff.isoformat(),
            "deleted": deleted,
            "checkpoint_sequence": checkpoint.sequence if checkpoint else None,
            "checkpoint_hash": checkpoint.hash if checkpoint else None,
            "database": connection.vendor,
        },
    )
    return PurgeResult(cutoff=cutoff, deleted=deleted, checkpoint=checkpoint, event=event)
