"""The sender: claim a group of queued batches, ask the governor, call DingTalk, hand the outcome
to delivery.services.outcomes.

No transaction is open across a DingTalk call: a batch is claimed (commit), sent, and its
outcome written (commit). A call whose outcome is ambiguous marks its batch unknown for the
sweeper to reconcile.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_noop

from accounts.channel import client_for_department
from common.errors import ApplicationError
from common.urls import portal_url
from delivery import media, messages
from delivery.governor import (
    Governor,
    GovernorUnavailable,
    Grant,
    department_app_key,
    get_governor,
    grant_ahead,
)
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    Dispatch,
    PauseCode,
    PlanStatus,
)
from delivery.services import uncertain
from delivery.services.lifecycle import QUOTA_USED_UP, plan_finish_if_complete, plan_pause
from delivery.services.outcomes import fail_batch, mark_unknown, record_accepted_many, release_batch
from dingtalk.client import DingTalkClient
from dingtalk.errors import (
    DingTalkError,
    InvalidCredentials,
    InvalidRequest,
    PermissionDenied,
    QuotaExhausted,
    Throttled,
    TransportError,
)

logger = logging.getLogger("delivery")


PAUSING_ERRORS = (InvalidCredentials, PermissionDenied, QuotaExhausted)


@dataclass(frozen=True)
class SendOutcome:
    outcome: str  # sent | skipped | retry | paused | failed | unknown
    retry_in: float = 0.0
    detail: str = ""


@dataclass
class SendReport:
    """What one send task did with its batches; ``retry`` ids go back to the broker."""

    sent: int = 0
    skipped: int = 0
    paused: int = 0
    failed: int = 0
    unknown: int = 0
    retry: list[int] = field(default_factory=list)
    retry_in: float = 0.0
    detail: str = ""

    def outcome(self) -> SendOutcome:
        """The single-batch view of this report (one id in, one outcome out)."""
        for name in ("sent", "paused", "failed", "unknown"):
            if getattr(self, name):
                return SendOutcome(name, detail=self.detail)
        if self.retry:
            return SendOutcome("retry", retry_in=self.retry_in, detail=self.detail)
        return SendOutcome("skipped", detail=self.detail or "not queued or plan not sending")


def batches_claim(batch_ids: list[int]) -> list[Batch]:
    """Claim whichever of these batches are still queued (and whose plan still sends).

    One conditional UPDATE marks them with a fresh token; the token then reads back exactly the
    batches this call claimed, so two workers handed the same ids never share a batch. Re-queued
    flow-control drops and reminders go out after the plan itself is done; a paused plan's
    batches stay queued for the resume.
    """
    if not batch_ids:
        return []
    batches = sorted(_claim_rows(batch_ids), key=lambda b: (not b.urgent, b.dispatch_id, b.seq))
    if not batches:
        return []
    # A group's batches share one or two dispatches: each is read (with its plan, department
    # and notice) once and shared, not once per batch through a join, which cost a quarter of
    # a send task's time in decoding the same message and notice twenty times over.
    dispatches = Dispatch.objects.select_related("plan__department", "plan__notice").in_bulk(
        {batch.dispatch_id for batch in batches}
    )
    for batch in batches:
        batch.dispatch = dispatches[batch.dispatch_id]
    return batches


def _claim_rows(batch_ids: list[int]) -> list[Batch]:
    """The conditional claim itself: the batches it moved from queued to claimed.

    On PostgreSQL one UPDATE ... RETURNING both claims and reads them (a third of a send
    task's own time went into the ORM's update, then the read-back by token). Elsewhere the
    ORM's update marks them with a fresh token, which then reads back exactly these.
    """
    sendable = [PlanStatus.SENDING.value, PlanStatus.DONE.value]
    now = timezone.now()
    token = uuid.uuid4().hex
    ids = sorted(set(batch_ids))  # rows locked in id order, as every claim does
    if connection.vendor == "postgresql":
        table = Batch._meta.db_table
        columns = ", ".join(
            f"b.{connection.ops.quote_name(f.column)}" for f in Batch._meta.concrete_fields
        )
        return list(
            Batch.objects.raw(
                f"UPDATE {table} AS b SET status = %s, claimed_at = %s, "  # noqa: S608 - names from model metadata, values bound
                "attempts = b.attempts + 1, claim_token = %s "
                f"FROM {Dispatch._meta.db_table} AS d "
                f"JOIN {DeliveryPlan._meta.db_table} AS p ON p.id = d.plan_id "
                "WHERE b.id = ANY(%s) AND b.status = %s AND d.id = b.dispatch_id "
                f"AND p.status = ANY(%s) RETURNING {columns}",
                [BatchStatus.CLAIMED, now, token, ids, BatchStatus.QUEUED, sendable],
            )
        )
    claimed = Batch.objects.filter(
        pk__in=ids, status=BatchStatus.QUEUED, dispatch__plan__status__in=sendable
    ).update(
        status=BatchStatus.CLAIMED, claimed_at=now, attempts=F("attempts") + 1, claim_token=token
    )
    if not claimed:
        return []
    return list(Batch.objects.filter(claim_token=token, status=BatchStatus.CLAIMED))


def batch_send(batch_id: int) -> SendOutcome:
    """Send one batch if it is still queued; record DingTalk's task id. Idempotent."""
    return batches_send([batch_id]).outcome()


def _confirm_links(batches: list[Batch]) -> dict[int, str]:
    """Per-person confirmation links of one-person batches, read in one query."""
    wanted = [
        b for b in batches if b.userids and messages.CONFIRM_PLACEHOLDER in str(b.dispatch.message)
    ]
    if not wanted:
        return {}
    keys = {(b.dispatch.plan_id, str(b.userids[0])) for b in wanted}
    ids = {
        (plan_id, userid): pk
        for pk, plan_id, userid in Delivery.objects.filter(
            plan_id__in={plan for plan, _ in keys},
            dingtalk_user_id__in={userid for _, userid in keys},
        ).values_list("pk", "plan_id", "dingtalk_user_id")
    }
    return {b.pk: confirm_url(ids.get((b.dispatch.plan_id, str(b.userids[0])), 0)) for b in wanted}


def confirm_url(delivery_id: int) -> str:
    path = reverse("delivery:confirm", args=[messages.confirm_token(delivery_id)])
    return portal_url(path)


def batches_send(batch_ids: list[int], *, inline_wait_s: float | None = None) -> SendReport:
    """Send a group of batches with one claim and one commit per flush. Idempotent.

    The task's unit is a group of batches (tens of DingTalk calls): the claim is one UPDATE,
    and accepted outcomes are written together (``record_accepted_many``) before any wait and
    at the end, so a crash leaves at most one flush's worth of claimed batches for the sweeper
    to reconcile (as unknown: resent, and DingTalk's duplicate-content drop shows who had it).

    The governor is asked before every call, for it and the next calls of the same app at once
    (GRANT_AHEAD): it grants the prefix that fits every limit now. A wait shorter than
    ``inline_wait_s`` (DELIVERY_INLINE_WAIT_S) is slept through here, which keeps the
    per-minute budget fully used; a longer one gives the rest of the group back to the queue
    with that countdown, so a large paced send never holds a worker that another department's
    notice needs.
    """
    claimed = batches_claim(batch_ids)
    if not claimed:
        return SendReport(skipped=len(batch_ids))
    run = _SendRun(claimed, inline_wait_s)
    run.report.skipped = len(batch_ids) - len(claimed)
    run.send_all()
    for plan_id in {b.dispatch.plan_id for b in claimed if b.dispatch.plan.snapshot_done}:
        plan_finish_if_complete(plan_id)
    return run.report


class _SendRun:
    """One send task's walk through its claimed batches (see batches_send)."""

    def __init__(self, claimed: list[Batch], inline_wait_s: float | None) -> None:
        self.report = SendReport()
        wait = settings.DELIVERY_INLINE_WAIT_S if inline_wait_s is None else inline_wait_s
        self.budget = float(wait)
        self.flush_s = float(settings.DELIVERY_FLUSH_S)
        self.governor: Governor = get_governor()
        self.links = _confirm_links(claimed)
        self.clients: dict[int, DingTalkClient] = {}
        self.paused: set[int] = set()
        self.allowance: dict[str, int] = {}  # calls the governor granted ahead, per app
        self.grant_ahead = grant_ahead()
        self.accepted: list[tuple[Batch, int]] = []
        self.pending = list(reversed(claimed))  # pop() takes them in order
        self.last_flush = time.monotonic()

    def send_all(self) -> None:
        while self.pending:
            if not self._send_next(self.pending.pop()):
                break
        self.flush()

    def flush(self) -> None:
        if self.accepted:
            _write_accepted(self.accepted)
            self.report.sent += len(self.accepted)
        self.accepted = []
        self.last_flush = time.monotonic()

    def _give_back(self, batches: list[Batch], wait_s: float, detail: str) -> None:
        for other in batches:
            release_batch(other.pk)
        self.report.retry.extend(b.pk for b in batches)
        self.report.retry_in = max(self.report.retry_in, wait_s)
        self.report.detail = detail

    def _pause(self, batch: Batch, code: str, reason: str, detail: str) -> None:
        release_batch(batch.pk)
        self.flush()
        plan_pause(batch.dispatch.plan_id, code=code, reason=reason)
        self.paused.add(batch.dispatch.plan_id)
        self.report.paused += 1
        self.report.detail = detail

    def _send_next(self, batch: Batch) -> bool:
        """Send one batch if the governor allows; False when the rest of the group goes back."""
        plan = batch.dispatch.plan
        if plan.pk in self.paused:
            release_batch(batch.pk)
            self.report.paused += 1
            return True
        if batch.task_id is not None:
            # A call of this batch did go out (its task id arrived after it was declared
            # unknown): it is recorded as sent, never sent again.
            self.accepted.append((batch, batch.task_id))
            return True
        if batch.after_unknown and not uncertain.resend_covered(
            batch.uncertain_since, timezone.now()
        ):
            # DingTalk's day changed since the first attempt: a resend could be a duplicate.
            self.flush()
            uncertain.hold_batch(batch, from_status=BatchStatus.CLAIMED)
            self.report.unknown += 1
            return True
        app_key = department_app_key(plan.department)
        try:
            decision = self._decide(batch, app_key)
        except GovernorUnavailable as exc:
            self._pause(batch, PauseCode.GOVERNOR_DOWN, str(exc), "governor unavailable")
            return True
        if decision.granted < 1:
            return self._refused(batch, decision)
        self.allowance[app_key] -= 1
        return self._record(batch, _send_one(batch, self.clients, self.links, app_key))

    def _decide(self, batch: Batch, app_key: str) -> Grant:
        if self.allowance.get(app_key, 0) > 0:
            return Grant(1)
        # One governor decision for this call and the following ones of the same app and
        # urgency (an urgent notice's calls hold the app's budget; its bulk calls wait).
        ahead = [batch]
        for later in reversed(self.pending):
            if len(ahead) >= self.grant_ahead:
                break
            if department_app_key(later.dispatch.plan.department) != app_key:
                break
            if later.urgent != batch.urgent:
                break
            ahead.append(later)
        decision = self.governor.acquire_many(
            app_key=app_key,
            api="asyncsend_v2",
            recipients=[max(b.size, 1) for b in ahead],
            edition=batch.dispatch.plan.department.dingtalk_edition,
            urgent=batch.urgent,
            claims=[b.pk for b in ahead],
        )
        self.allowance[app_key] = decision.granted
        return decision

    def _refused(self, batch: Batch, decision: Grant) -> bool:
        if decision.reason == "monthly_quota":
            self._pause(batch, PauseCode.QUOTA_EXHAUSTED, QUOTA_USED_UP, "quota")
            return True
        self.flush()
        if decision.wait_s <= self.budget:
            time.sleep(decision.wait_s)
            self.budget -= decision.wait_s
            self.pending.append(batch)
            return True
        self._give_back([batch, *reversed(self.pending)], decision.wait_s, decision.reason)
        return False

    def _record(self, batch: Batch, outcome: int | SendOutcome) -> bool:
        if isinstance(outcome, int):
            self.accepted.append((batch, outcome))
            if time.monotonic() - self.last_flush >= self.flush_s:
                self.flush()
            return True
        self.flush()
        self.report.detail = outcome.detail
        if outcome.outcome == "retry":
            self._give_back([batch, *reversed(self.pending)], outcome.retry_in, outcome.detail)
            return False
        if outcome.outcome == "paused":
            self.paused.add(batch.dispatch.plan_id)
            self.report.paused += 1
        elif outcome.outcome == "failed":
            self.report.failed += 1
        elif outcome.outcome == "unknown":
            self.report.unknown += 1
        return True


def _write_accepted(accepted: list[tuple[Batch, int]]) -> None:
    """Write accepted calls, waiting out a database restart: their task ids exist only here.

    Lost, they would leave the batches claimed, then unknown, then sent again. The wait is
    bounded (DELIVERY_ACCEPT_WRITE_S) by the task's time limit; the error is raised after it.
    """
    deadline = time.monotonic() + float(settings.DELIVERY_ACCEPT_WRITE_S)
    pause = 0.25
    while True:
        try:
            record_accepted_many(accepted)
            return
        except (OperationalError, InterfaceError):
            if time.monotonic() + pause > deadline:
                raise
            logger.warning(
                "delivery: database unreachable; writing %s accepted calls again", len(accepted)
            )
            connection.close()
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _send_one(
    batch: Batch, clients: dict[int, DingTalkClient], links: dict[int, str], app_key: str
) -> int | SendOutcome:
    """One asyncsend_v2 call: DingTalk's task id, or the outcome of a call that did not go out.

    Everything but acceptance is written here (release, pause, failure, unknown); acceptances
    are written by the caller in groups.
    """
    plan = batch.dispatch.plan
    try:
        client = clients.get(plan.department_id)
        if client is None:
            client = clients[plan.department_id] = client_for_department(plan.department)
        msg = batch.dispatch.message
        if batch.pk in links:
            msg = messages.personalise(msg, links[batch.pk])
        result = client.send(
            msg,
            userids=list(batch.userids),
            dept_ids=[int(d) for d in batch.dept_ids],
            to_all_user=batch.to_all,
        )
    except ApplicationError as exc:
        release_batch(batch.pk)
        plan_pause(plan.pk, code=exc.code, reason=exc.message)
        return SendOutcome("paused", detail=exc.code)
    except TransportError as exc:
        if exc.ambiguous:
            mark_unknown(batch.pk, str(exc))
            return SendOutcome("unknown", detail=str(exc))
        release_batch(batch.pk, error=str(exc), code="transport")
        return SendOutcome("retry", retry_in=2.0, detail=str(exc))
    except Throttled as exc:
        release_batch(batch.pk, error=str(exc), code=str(exc.errcode or exc.scope))
        try:
            get_governor().pause(app_key=app_key, seconds=exc.retry_after)
        except GovernorUnavailable:
            logger.warning("delivery: governor down while pausing %s", app_key)
        return SendOutcome("retry", retry_in=exc.retry_after, detail=str(exc))
    except PAUSING_ERRORS as exc:
        release_batch(batch.pk, error=str(exc), code=str(exc.errcode or type(exc).__name__))
        plan_pause(plan.pk, code=_pause_code(exc), reason=_pause_text(exc))
        return SendOutcome("paused", detail=str(exc))
    except InvalidRequest as exc:
        if exc.errcode == media.UNKNOWN_MEDIA_ID and media.message_media_id(batch.dispatch.message):
            # The file is uploaded again and the plan resumes (media.renew_for_plan): its
            # people wait, they do not fail.
            release_batch(batch.pk, error=str(exc), code=str(exc.errcode))
            plan_pause(plan.pk, code=PauseCode.MEDIA_EXPIRED, reason=media.MEDIA_EXPIRED_REASON)
            return SendOutcome("paused", detail=str(exc))
        fail_batch(batch.pk, exc)
        return SendOutcome("failed", detail=str(exc))
    except DingTalkError as exc:
        if exc.is_transient:
            release_batch(batch.pk, error=str(exc), code=str(exc.errcode or "transient"))
            return SendOutcome("retry", retry_in=2.0, detail=str(exc))
        fail_batch(batch.pk, exc)
        return SendOutcome("failed", detail=str(exc))
    return result.task_id


def _pause_text(exc: DingTalkError) -> str:
    # Stored in English; pages translate them for the reader (DeliveryPlan.pause_reason_text).
    if isinstance(exc, InvalidCredentials):
        return gettext_noop(
            "DingTalk refused the department's app key or secret. Fix the credentials, then resume."
        )
    if isinstance(exc, QuotaExhausted):
        return QUOTA_USED_UP
    return gettext_noop(
        "DingTalk refused the app (revoked, or a permission or IP whitelist is missing)."
    )


def _pause_code(exc: DingTalkError) -> str:
    if isinstance(exc, QuotaExhausted):
        return PauseCode.QUOTA_EXHAUSTED
    return type(exc).__name__  # InvalidCredentials, PermissionDenied or one of its kinds
