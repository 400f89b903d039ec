"""Every metered DingTalk call a notice will cause, forecast before approval (pure arithmetic).

The pre-flight used to count the first send only; most of a notice's cost comes later: receipt
polls on DingTalk's schedule (planning.poll_offsets), reminder rounds (each one a new send to
everyone still silent, and its own polls) and the approver alerts of its submission. Token and
directory calls are exempt from the quota (dingtalk-api.md §9) and are not counted.

The forecast is a worst case in the way the engine behaves: nobody reads, so every poll of the
schedule runs and every reminder goes to everyone; an organisation- or department-wide send's
progress is polled a few times. A recall is not part of the total (it may never happen) but is
told beside it: one call per accepted task.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from delivery import planning
from delivery.planning import Strategy

PROGRESS_POLLS_PER_TASK = 3  # getsendprogress until DingTalk says done (a handful)
ALERTS_PER_CALL = 100  # approver alerts go by user id, 100 a call (notices.alerts)


@dataclass(frozen=True)
class Forecast:
    sends: int  # asyncsend_v2 of the notice itself
    companion_cards: int  # the text card beside a file or voice message
    uploads: int  # media/upload before the first send
    receipt_polls: int  # getsendresult / getsendprogress on the schedule
    reminders: int  # the reminder rounds' sends
    reminder_polls: int  # the reminder batches' receipt polls
    approver_alerts: int  # the submission's alert to supervisors
    recall: int  # not in the total: what a recall would cost

    @property
    def total(self) -> int:
        return (
            self.sends
            + self.companion_cards
            + self.uploads
            + self.receipt_polls
            + self.reminders
            + self.reminder_polls
            + self.approver_alerts
        )

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def user_calls(by_language: dict[str, int], *, per_person: bool) -> int:
    """Calls to send by user id: each message language's people in calls of 100 (or 1)."""
    if per_person:
        return sum(by_language.values())
    return sum(math.ceil(n / planning.MAX_USERIDS_PER_CALL) for n in by_language.values() if n)


def forecast(
    *,
    strategy: str,
    by_language: dict[str, int],
    dept_count: int = 0,
    companion: bool = False,
    media_uploads: int = 0,
    reminders: int = 0,
    fast_receipts: bool = False,
    approvers_alerted: int = 0,
) -> Forecast:
    """The metered calls of one notice.

    ``by_language``: portal recipients by the message language they get (en / zh);
    ``approvers_alerted``: supervisors with a DingTalk account who get the submission's alert.
    """
    people = sum(by_language.values())
    if people <= 0 and strategy not in (Strategy.ORG_WIDE, Strategy.DEPT_WIDE):
        return Forecast(0, 0, 0, 0, 0, 0, _alerts(approvers_alerted), 0)
    if strategy == Strategy.ORG_WIDE:
        base, polls_each = 1, PROGRESS_POLLS_PER_TASK
    elif strategy == Strategy.DEPT_WIDE:
        base = max(1, math.ceil(dept_count / planning.MAX_DEPTS_PER_CALL))
        polls_each = PROGRESS_POLLS_PER_TASK
    else:
        base = user_calls(by_language, per_person=strategy == Strategy.PER_PERSON)
        polls_each = len(planning.poll_offsets(fast_receipts))
    cards = base if companion else 0
    # Reminders go by user id to everyone still silent (all of them, in the worst case).
    per_round = user_calls(by_language, per_person=strategy == Strategy.PER_PERSON)
    reminder_sends = max(0, reminders) * per_round
    reminder_polls = reminder_sends * len(planning.poll_offsets(fast_receipts))
    return Forecast(
        sends=base,
        companion_cards=cards,
        uploads=max(0, media_uploads),
        receipt_polls=(base + cards) * polls_each,
        reminders=reminder_sends,
        reminder_polls=reminder_polls,
        approver_alerts=_alerts(approvers_alerted),
        recall=base + cards + reminder_sends,
    )


def _alerts(approvers: int) -> int:
    return math.ceil(max(0, approvers) / ALERTS_PER_CALL)
