"""Delivery records: plans, dispatches, batches, per-person deliveries; the governor's store."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class GovernorEntry(models.Model):
    """One call (or a call's recipients) inside a sliding window of the database governor."""

    key = models.CharField(max_length=200)
    at = models.FloatField()
    amount = models.PositiveIntegerField(default=1)

    class Meta:
        indexes = [models.Index(fields=["key", "at"], name="governor_entry_window_idx")]

    def __str__(self) -> str:
        return f"{self.key}@{self.at:.3f} x{self.amount}"


class GovernorCounter(models.Model):
    """A named counter (the month's metered calls), lock row, pause deadline, or a tally of
    the governor's refusals (``waits:<reason>``: ``value`` refusals, ``until`` their seconds)."""

    key = models.CharField(max_length=200, unique=True)
    value = models.BigIntegerField(default=0)
    until = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class PlanStatus(models.TextChoices):
    PLANNING = "planning", _("Planning")
    SENDING = "sending", _("Sending")
    PAUSED = "paused", _("Paused")
    DONE = "done", _("Done")
    RECALLING = "recalling", _("Recalling")
    RECALLED = "recalled", _("Recalled")
    CANCELLED = "cancelled", _("Cancelled")


class PauseCode(models.TextChoices):
    """Why a plan paused (DeliveryPlan.pause_code). The sweeper resumes a plan by itself once
    the cause of one of these is gone; codes of other ApplicationErrors (a file DingTalk
    refused, say) are stored as they come and wait for a supervisor's Resume."""

    GOVERNOR_DOWN = "governor_down", _("Rate governor unavailable")
    QUOTA_EXHAUSTED = "quota_exhausted", _("Monthly quota used up")
    INVALID_CREDENTIALS = "InvalidCredentials", _("App key or secret refused")
    APP_REFUSED = "PermissionDenied", _("App refused by DingTalk")
    CHANNEL_UNCONFIGURED = "channel_unconfigured", _("No DingTalk app configured")
    SECRET_MISSING = "secret_missing", _("App secret missing")
    MEDIA_EXPIRED = "media_expired", _("DingTalk forgot the uploaded file")


class DeliveryPlan(models.Model):
    """One notice's send: strategy, the recipient snapshot's progress, pause reason, timing.

    The snapshot is taken in chunks ordered by recipient id; ``snapshot_cursor`` is the last
    recipient id written, moved with a conditional update so a second planner run is a no-op.
    """

    notice = models.OneToOneField(
        "notices.Notice", on_delete=models.PROTECT, related_name="delivery_plan"
    )
    department = models.ForeignKey(
        "accounts.Department", on_delete=models.PROTECT, related_name="+"
    )
    strategy = models.CharField(max_length=16)
    status = models.CharField(
        max_length=16, choices=PlanStatus.choices, default=PlanStatus.PLANNING
    )
    pause_reason = models.CharField(max_length=300, blank=True)
    pause_code = models.CharField(max_length=40, blank=True)
    planned = models.PositiveIntegerField(default=0)
    # Who the strategy reaches (delivery.reach): an organisation- or department-wide send
    # reaches every DingTalk member there, portal recipients or not; scope says which count.
    reach = models.PositiveIntegerField(null=True, blank=True)
    reach_scope = models.CharField(max_length=16, blank=True, default="")
    reach_counted_at = models.DateTimeField(null=True, blank=True)
    # A small closed-loop notice whose quota allows it polls receipts sooner (+30 s, +2 min).
    fast_receipts = models.BooleanField(default=False)
    snapshot_cursor = models.BigIntegerField(default=0)
    snapshot_done = models.BooleanField(default=False)
    urgent = models.BooleanField(default=False)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    next_reminder_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    first_accepted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    recalled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status"], name="delivery_plan_status_idx")]

    def __str__(self) -> str:
        return f"plan of notice #{self.notice_id} ({self.status})"

    def pause_reason_text(self) -> str:
        """The pause reason in the reader's language: the engine stores its fixed reasons in
        English (marked with gettext_noop); a reason with details in it stays as written."""
        return gettext(self.pause_reason) if self.pause_reason else ""


class Dispatch(models.Model):
    """One message of a plan: per language, per round (0 = the notice, 1.. = reminders)."""

    plan = models.ForeignKey(DeliveryPlan, on_delete=models.CASCADE, related_name="dispatches")
    language = models.CharField(max_length=8)  # en, zh, both
    round = models.PositiveSmallIntegerField(default=0)
    message = models.JSONField()
    content_hash = models.CharField(max_length=64)
    next_seq = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "language", "round"], name="dispatch_unique_language_round"
            )
        ]

    def __str__(self) -> str:
        return f"dispatch {self.language} round {self.round} of plan {self.plan_id}"


class BatchStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    CLAIMED = "claimed", _("Being sent")
    ACCEPTED = "accepted", _("Accepted by DingTalk")
    UNKNOWN = "unknown", _("Outcome unknown")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    # An unknown outcome DingTalk's same-day duplicate rule no longer covers: a supervisor
    # sends it again or closes it (delivery.services.uncertain).
    HELD = "held", _("Outcome unknown, held for a supervisor")
    CLOSED = "closed", _("Outcome unknown, closed by a supervisor")


class Batch(models.Model):
    """One asyncsend_v2 call: <= 100 user ids, <= 20 departments, or the whole organisation.

    (dispatch, seq) is the idempotency key; the status moves only by conditional updates.
    """

    dispatch = models.ForeignKey(Dispatch, on_delete=models.CASCADE, related_name="batches")
    seq = models.PositiveIntegerField()
    userids = models.JSONField(default=list)
    dept_ids = models.JSONField(default=list)
    to_all = models.BooleanField(default=False)
    size = models.PositiveIntegerField()
    status = models.CharField(
        max_length=10, choices=BatchStatus.choices, default=BatchStatus.QUEUED
    )
    urgent = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Written by the claim's conditional UPDATE; reads back exactly the batches one claim took.
    claim_token = models.CharField(max_length=32, blank=True, db_index=False)
    task_id = models.BigIntegerField(null=True, blank=True)
    # A resend of a batch whose first call's outcome was unknown: a duplicate-content drop
    # (143106) in its result means the first call did reach that person.
    after_unknown = models.BooleanField(default=False)
    # DingTalk's flow control dropped some of this batch's people and they went into a new
    # batch: later polls of this batch report the same drops, which are not sent again.
    drops_requeued = models.BooleanField(default=False, db_default=False)
    # When the first call whose outcome is unknown was claimed: it reached DingTalk (if it
    # did) between then and the moment it became unknown.
    uncertain_since = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    polls_done = models.PositiveSmallIntegerField(default=0)
    # When a receipt poll last answered, and what getsendprogress said (organisation- and
    # department-wide sends have no per-person read lists: this is all DingTalk reports).
    last_polled_at = models.DateTimeField(null=True, blank=True)
    send_progress = models.PositiveSmallIntegerField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    receipts_done = models.BooleanField(default=False)
    recalled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dispatch", "seq"], name="batch_unique_seq"),
            # A userid_list call names at most 100 people (5,000 bounds any sane batch); an
            # organisation- or department-wide call reaches however many people they hold.
            models.CheckConstraint(
                condition=models.Q(size__lte=5000) | models.Q(to_all=True) | ~models.Q(dept_ids=[]),
                name="batch_size_within_dingtalk_reach",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "claimed_at"], name="batch_status_idx"),
            models.Index(
                fields=["claim_token"],
                name="batch_claim_token_idx",
                condition=~models.Q(claim_token=""),
            ),
            models.Index(
                fields=["next_poll_at"],
                name="batch_poll_due_idx",
                condition=models.Q(receipts_done=False, status="accepted"),
            ),
            # The dashboard's last and next receipt poll, per message, without reading every
            # batch of the plan (delivery.reach._poll_times).
            models.Index(
                fields=["dispatch", "last_polled_at"],
                name="batch_dispatch_polled_idx",
                condition=models.Q(last_polled_at__isnull=False),
            ),
            models.Index(
                fields=["dispatch", "next_poll_at"],
                name="batch_dispatch_due_idx",
                condition=models.Q(receipts_done=False, status="accepted"),
            ),
        ]

    def __str__(self) -> str:
        return f"batch {self.seq} of dispatch {self.dispatch_id} ({self.status})"


class DeliveryState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    ACCEPTED = "accepted", _("Accepted")
    READ = "read", _("Read")
    UNREAD = "unread", _("Delivered, unread")
    FAILED = "failed", _("Failed")
    INVALID = "invalid", _("Invalid user")
    FORBIDDEN = "forbidden", _("Held back by DingTalk flow control")
    CANCELLED = "cancelled", _("Not sent")
    UNKNOWN = "unknown", _("Outcome unknown")


class OutreachStatus(models.TextChoices):
    NONE = "", _("Not on the outreach list")
    OPEN = "open", _("To contact")
    CLOSED = "closed", _("Closed")


class Delivery(models.Model):
    """One recipient of one notice: the outbox row and the receipt, person by person.

    A million-person notice writes a million of these in one INSERT ... SELECT per chunk
    while its first batches are already being sent, so the table carries only the indexes its
    queries use, and its references have no database-level foreign-key check (the checks were
    half of the snapshot's time: about 19 s per million rows here). Integrity holds by
    construction: the snapshot writes each row in the same transaction as its plan, dispatch
    and batch, from recipient rows it has just read; Django still applies on_delete; and
    recipients are never deleted in place, erasure anonymises them
    (``delivery.privacy``, audiences.services.recipient_erase).
    """

    plan = models.ForeignKey(
        DeliveryPlan,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_constraint=False,
        db_index=False,  # delivery_unique_person_per_plan starts with plan_id
    )
    dispatch = models.ForeignKey(
        Dispatch, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    # Not indexed either: no query looks people up by batch (a failed batch's people are found
    # by plan and user id), and it was one index entry more per row of every snapshot.
    batch = models.ForeignKey(
        Batch,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    recipient = models.ForeignKey(
        "audiences.Recipient",
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    dingtalk_user_id = models.CharField(max_length=64)
    district_id = models.IntegerField(null=True, blank=True)
    state = models.CharField(
        max_length=10, choices=DeliveryState.choices, default=DeliveryState.QUEUED
    )
    code = models.IntegerField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    first_read_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    outreach = models.CharField(
        max_length=8, choices=OutreachStatus.choices, default=OutreachStatus.NONE, blank=True
    )
    outreach_assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # see delivery_outreach_assignee_idx: only assigned rows are indexed
    )
    outreach_outcome = models.CharField(max_length=300, blank=True)
    outreach_closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "dingtalk_user_id"], name="delivery_unique_person_per_plan"
            )
        ]
        # No index names ``state``: a person's row changes state once or twice (delivered,
        # then read; acceptance is the batch's, see effective_state). With no indexed column
        # changing, and the table's pages kept half empty (fillfactor 50, set by migration 0005
        # on PostgreSQL), PostgreSQL rewrites the row in place (a HOT update) instead of adding
        # an entry to every index. Dashboards read a plan's rows through
        # delivery_unique_person_per_plan.
        indexes = [
            models.Index(
                fields=["outreach_assignee"],
                name="delivery_outreach_assignee_idx",
                condition=models.Q(outreach_assignee__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dingtalk_user_id}: {self.state}"


# A call's acceptance is written once, on its batch. Its people's rows stay "queued" until the
# first receipt poll writes what DingTalk knows of each of them (unread, read, invalid...): a
# person whose row is queued in an accepted batch is accepted. Writing "accepted" into every
# row as well cost a million updates for a million-person notice, the largest share of the
# database's work while sending, and said nothing the batch did not. (Rows written after
# their organisation- or department-wide batch was accepted carry "accepted" themselves.)
# Every reader of a person's state goes through these two helpers.


def effective_state() -> models.Case:
    """A person's state, with acceptance read from their batch (annotate with it)."""
    return models.Case(
        models.When(
            state=DeliveryState.QUEUED,
            batch__status=BatchStatus.ACCEPTED,
            then=models.Value(DeliveryState.ACCEPTED.value),
        ),
        default=models.F("state"),
        output_field=models.CharField(),
    )


def effective_accepted_at() -> Coalesce:
    """When DingTalk accepted the person's call (annotate with it)."""
    return Coalesce(
        models.F("accepted_at"), models.F("batch__accepted_at"), output_field=models.DateTimeField()
    )


def effective_state_in(states: tuple[str, ...] | list[str]) -> models.Q:
    """Rows whose effective state is one of these (filter with it; usable in update())."""
    wanted = set(states)
    plain = sorted(wanted - {DeliveryState.QUEUED, DeliveryState.ACCEPTED})
    condition = models.Q(state__in=plain)
    if DeliveryState.ACCEPTED in wanted:
        condition |= models.Q(state=DeliveryState.ACCEPTED) | models.Q(
            state=DeliveryState.QUEUED, batch__status=BatchStatus.ACCEPTED
        )
    if DeliveryState.QUEUED in wanted:
        condition |= models.Q(state=DeliveryState.QUEUED) & ~models.Q(
            batch__status=BatchStatus.ACCEPTED
        )
    return condition


class ServiceWindowBatch(models.Model):
    """One Service Window mass send (delivery.services.service_window) to the notice's followers:
    all of them (``to_all``) or up to 1,000 user ids. Its ``uuid`` is fixed when the batch is
    created, so a retried, swept or resent call is refused by DingTalk as ``uuid.repeat`` instead
    of being delivered twice."""

    plan = models.ForeignKey(DeliveryPlan, on_delete=models.CASCADE, related_name="sw_batches")
    seq = models.PositiveIntegerField()
    uuid = models.CharField(max_length=64, unique=True)
    to_all = models.BooleanField(default=False)
    userids = models.JSONField(default=list)
    size = models.PositiveIntegerField()
    status = models.CharField(
        max_length=16, choices=BatchStatus.choices, default=BatchStatus.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    task_id = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    recalled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "seq"], name="swbatch_unique_plan_seq")
        ]

    def __str__(self) -> str:
        return f"service window batch {self.plan_id}/{self.seq}"


class PlanTally(models.Model):
    """One signed delta of a plan's rollups (kinds and keys: ``delivery.rollup_sql``).

    Written only by database triggers on the people's and batches' tables, in the statement
    that changed them; read only through ``delivery.rollups``, which sums a plan's rows and
    folds them together now and then. No foreign-key check: a plan's rows may be removed
    before or after its tally in a cascade.
    """

    plan = models.ForeignKey(
        DeliveryPlan,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    kind = models.CharField(max_length=4)
    key = models.CharField(max_length=40)
    n = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["plan", "kind", "key"], name="plantally_plan_kind_idx")]

    def __str__(self) -> str:
        return f"plan {self.plan_id} {self.kind}:{self.key} {self.n:+d}"
