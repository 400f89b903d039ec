"""The notice's status while delivery sends it: the only writes of Notice.status outside the
notice's own services (create, submit, approve, reject, cancel in notices.services).

Delivery's stages call these inside their own transaction, next to the plan's change and its
audit event (delivery writes the event: it knows the plan, the batches and the reason). Each is
a conditional UPDATE, so a transition that already happened, or one a concurrent change made
impossible, moves nothing and returns False.
"""

from __future__ import annotations

from django.utils import timezone

from notices.models import Notice, Status

REASON_MAX = 500


def notice_mark_sending(notice_id: int) -> bool:
    """An approved, or scheduled and due, notice starts sending."""
    return _move(notice_id, (Status.APPROVED, Status.SCHEDULED), Status.SENDING, "")


def notice_mark_paused(notice_id: int, *, reason: str) -> bool:
    """Sending stopped for a reason staff can act on."""
    return _move(notice_id, (Status.SENDING,), Status.PAUSED, reason)


def notice_mark_resumed(notice_id: int) -> bool:
    """A paused notice sends again."""
    return _move(notice_id, (Status.PAUSED,), Status.SENDING, "")


def notice_mark_sent(notice_id: int, *, failed: bool) -> str:
    """Every batch has an outcome. Returns the final status (sent, or sent with failures)."""
    final = Status.SENT_WITH_FAILURES if failed else Status.SENT
    Notice.objects.filter(pk=notice_id, status=Status.SENDING).update(
        status=final, updated_at=timezone.now()
    )
    return final


def notice_mark_recalled(notice_id: int, *, reason: str) -> bool:
    """A sent (or sending, or paused) notice is withdrawn from people's DingTalk."""
    moved = (
        Notice.objects.filter(pk=notice_id)
        .exclude(status=Status.RECALLED)
        .update(
            status=Status.RECALLED, status_reason=reason[:REASON_MAX], updated_at=timezone.now()
        )
    )
    return moved == 1


def _move(notice_id: int, sources: tuple[str, ...], target: str, reason: str) -> bool:
    moved = Notice.objects.filter(pk=notice_id, status__in=sources).update(
        status=target, status_reason=reason[:REASON_MAX], updated_at=timezone.now()
    )
    return moved == 1
