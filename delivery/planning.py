"""Send planning as pure functions: strategy, calls, time and cost of a notice (no I/O).

The notices pre-flight panel and the dispatcher both use these, so what staff are shown before
approval is what the engine then does. Figures come from dingtalk-api.md §2 and §9:

- ``userid_list`` holds at most 100 ids; ``getsendresult`` only answers for tasks of at most
  100 recipients, so per-person read tracking needs batches of <= 100 ids;
- ``dept_id_list`` holds at most 20 departments; ``to_all_user`` may be used 3 times a day;
- an app reaches at most 5,000 recipients a minute (over that, people are silently dropped);
- push costs under HK$0.03 against about HK$0.25 per SMS (the seed's figures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypeVar

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

T = TypeVar("T")

MAX_USERIDS_PER_CALL = 100
MAX_DEPTS_PER_CALL = 20
ORG_WIDE_SENDS_PER_DAY = 3
RECIPIENTS_PER_MINUTE = 5_000
SMS_COST_HKD = 0.25
PUSH_COST_HKD = 0.03
# Receipt polls per tracked task: +1, +3, +10, +30 min, +2, +6, +23 h (stops early when all read).
RECEIPT_POLL_OFFSETS_S: tuple[int, ...] = (60, 180, 600, 1800, 7200, 21600, 82800)
# A small closed-loop notice polls sooner too (+30 s, +2 min), when the month's quota allows, so a
# trainee sees reads within a minute (delivery.reach.fast_receipts_allowed).
FAST_RECEIPT_POLL_OFFSETS_S: tuple[int, ...] = (30, 60, 120, *RECEIPT_POLL_OFFSETS_S[1:])
FAST_RECEIPTS_MAX_PEOPLE = 200
RECEIPT_WINDOW_S = 24 * 3600


def poll_offsets(fast: bool = False) -> tuple[int, ...]:
    return FAST_RECEIPT_POLL_OFFSETS_S if fast else RECEIPT_POLL_OFFSETS_S


class Tier:
    CITYWIDE = "citywide"
    TARGETED = "targeted"
    CLOSED_LOOP = "closed_loop"


class Strategy:
    ORG_WIDE = "org_wide"  # one to_all_user call per message
    DEPT_WIDE = "dept_wide"  # dept_id_list calls of <= 20 departments
    USER_BATCHES = "user_batches"  # userid_list calls of <= 100 ids
    PER_PERSON = "per_person"  # one id per call: a personal confirmation link in each message

    CHOICES = (ORG_WIDE, DEPT_WIDE, USER_BATCHES, PER_PERSON)


_STRATEGY_LABELS = {
    Strategy.ORG_WIDE: _("Whole organisation in one call"),
    Strategy.DEPT_WIDE: _("By DingTalk department"),
    Strategy.USER_BATCHES: _("In batches of up to 100 people"),
    Strategy.PER_PERSON: _("One person per call (personal links)"),
}


def strategy_label(strategy: str) -> str:
    """The strategy as a reader names it, in their language ("user_batches" is a code)."""
    return str(_STRATEGY_LABELS.get(strategy, strategy))


def is_closed_loop(tier: str) -> bool:
    return tier.replace("-", "_") in (Tier.CLOSED_LOOP, "closedloop", "closed")


def choose_strategy(
    *,
    tier: str,
    tracked: bool = True,
    org_wide_possible: bool = False,
    dept_ids: list[int] | None = None,
    personal_links: bool = False,
    org_wide_used_today: int = 0,
) -> str:
    """The cheapest send that still gives what the notice needs.

    Closed-loop notices always go person by person in <= 100-id batches (or one id per call when
    each message carries a personal confirmation link). A broadcast that needs no per-person read
    tracking uses to_all_user when its audience is the whole organisation and today's three
    organisation-wide sends are not used up, else dept_id_list when the audience maps exactly
    onto DingTalk departments.
    """
    if is_closed_loop(tier) or personal_links:
        return Strategy.PER_PERSON if personal_links else Strategy.USER_BATCHES
    if tracked:
        return Strategy.USER_BATCHES
    if org_wide_possible and org_wide_used_today < ORG_WIDE_SENDS_PER_DAY:
        return Strategy.ORG_WIDE
    if dept_ids:
        return Strategy.DEPT_WIDE
    return Strategy.USER_BATCHES


def send_calls(*, strategy: str, recipients: int, messages: int, dept_count: int = 0) -> int:
    """asyncsend_v2 calls: per message for org-wide, per 20 departments, per 100 or 1 person."""
    if recipients <= 0:
        return 0
    if strategy == Strategy.ORG_WIDE:
        return messages
    if strategy == Strategy.DEPT_WIDE:
        return messages * max(1, math.ceil(dept_count / MAX_DEPTS_PER_CALL))
    if strategy == Strategy.PER_PERSON:
        return recipients
    # Each language's recipients are batched separately, so each may end in a part-full batch.
    return math.ceil(recipients / MAX_USERIDS_PER_CALL) + max(0, messages - 1)


def receipt_calls(*, strategy: str, tracked_tasks: int, fast: bool = False) -> int:
    """Worst-case getsendresult/getsendprogress calls over the 24-hour window."""
    if strategy in (Strategy.ORG_WIDE, Strategy.DEPT_WIDE):
        # Progress is polled until done: a handful of calls per task.
        return tracked_tasks * 3
    return tracked_tasks * len(poll_offsets(fast))


def eta_seconds(recipients: int, per_minute: int = RECIPIENTS_PER_MINUTE) -> float:
    """Time DingTalk needs to deliver to everyone at the per-app recipient rate."""
    if recipients <= 0:
        return 0.0
    if recipients <= per_minute:
        # The first minute's budget covers it: delivery is as fast as the calls go out.
        return 0.0
    return (recipients / per_minute) * 60.0


@dataclass(frozen=True)
class Estimate:
    tier: str
    strategy: str
    recipients: int
    languages: int
    messages: int
    send_calls: int
    receipt_calls: int
    calls: int  # metered calls in total (send + receipts)
    eta_s: float
    sms_cost_hkd: float
    push_cost_hkd: float
    sms_saving_hkd: float
    tracked: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def eta_minutes(self) -> float:
        return round(self.eta_s / 60.0, 1)

    def as_dict(self) -> dict[str, object]:
        return {
            "tier": self.tier,
            "strategy": self.strategy,
            "recipients": self.recipients,
            "languages": self.languages,
            "messages": self.messages,
            "send_calls": self.send_calls,
            "receipt_calls": self.receipt_calls,
            "calls": self.calls,
            "eta_s": self.eta_s,
            "eta_minutes": self.eta_minutes,
            "sms_cost_hkd": self.sms_cost_hkd,
            "push_cost_hkd": self.push_cost_hkd,
            "sms_saving_hkd": self.sms_saving_hkd,
            "tracked": self.tracked,
            "warnings": list(self.warnings),
        }


def _warnings(
    *, eta_s: float, org_wide_spent: bool, calls: int, calls_left: int | None
) -> list[str]:
    """The send arithmetic's warnings, in the reader's language."""
    warnings: list[str] = []
    if eta_s > 0:
        warnings.append(
            gettext(
                "DingTalk delivers at most %(rate)s recipients a minute: about %(minutes)s "
                "minutes to reach everyone."
            )
            % {"rate": f"{RECIPIENTS_PER_MINUTE:,}", "minutes": math.ceil(eta_s / 60)}
        )
    if org_wide_spent:
        warnings.append(
            gettext("Today's three organisation-wide sends are used up; sending in batches.")
        )
    if calls_left is not None and calls > calls_left:
        warnings.append(
            gettext(
                "The send needs up to %(total)s metered calls but only %(left)s are left this "
                "month."
            )
            % {"total": f"{calls:,}", "left": f"{calls_left:,}"}
        )
    return warnings


def estimate(
    *,
    tier: str,
    recipients: int,
    languages: int = 2,
    tracked: bool = True,
    org_wide_possible: bool = False,
    dept_count: int = 0,
    personal_links: bool = False,
    org_wide_used_today: int = 0,
    calls_left: int | None = None,
    companion: bool = False,
    media_uploads: int = 0,
) -> Estimate:
    """What sending costs: strategy, calls, time to deliver, SMS saving, and warnings.

    ``languages`` is the number of distinct messages for person-by-person sends (one per
    language); department- and organisation-wide sends carry one bilingual message.
    ``calls_left`` (the month's metered calls left) adds a warning when the send would not fit.
    ``companion``: a file or voice notice, whose text goes in a second message beside the
    media, so every call has a twin (and its receipts are polled too); ``media_uploads``: the
    metered media/upload calls made before the first send.
    """
    recipients = max(0, int(recipients))
    languages = max(1, int(languages))
    tracked = tracked or is_closed_loop(tier)
    strategy = choose_strategy(
        tier=tier,
        tracked=tracked,
        org_wide_possible=org_wide_possible,
        dept_ids=list(range(dept_count)) if dept_count else None,
        personal_links=personal_links,
        org_wide_used_today=org_wide_used_today,
    )
    messages = 1 if strategy in (Strategy.ORG_WIDE, Strategy.DEPT_WIDE) else languages
    messages = min(messages, max(1, recipients))
    calls_out = send_calls(
        strategy=strategy, recipients=recipients, messages=messages, dept_count=dept_count
    ) * (2 if companion else 1)
    polls = receipt_calls(strategy=strategy, tracked_tasks=calls_out)
    eta = eta_seconds(recipients)
    total = calls_out + polls + (max(0, media_uploads) if recipients else 0)
    warnings = _warnings(
        eta_s=eta,
        org_wide_spent=org_wide_possible and org_wide_used_today >= ORG_WIDE_SENDS_PER_DAY,
        calls=total,
        calls_left=calls_left,
    )
    sms = round(recipients * SMS_COST_HKD, 2)
    push = round(recipients * PUSH_COST_HKD, 2)
    return Estimate(
        tier=tier,
        strategy=strategy,
        recipients=recipients,
        languages=languages,
        messages=messages,
        send_calls=calls_out,
        receipt_calls=polls,
        calls=total,
        eta_s=eta,
        sms_cost_hkd=sms,
        push_cost_hkd=push,
        sms_saving_hkd=round(sms - push, 2),
        tracked=tracked,
        warnings=warnings,
    )


def split_batches(ids: list[T], size: int = MAX_USERIDS_PER_CALL) -> list[list[T]]:
    """Consecutive chunks of at most ``size`` (the last one may be part-full)."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def next_poll_offset(polls_done: int, fast: bool = False) -> int | None:
    """Seconds after acceptance of the next receipt poll, or None when the schedule is over."""
    offsets = poll_offsets(fast)
    if polls_done < len(offsets):
        return offsets[polls_done]
    return None
