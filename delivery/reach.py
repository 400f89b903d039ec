"""What a notice's send really reaches, told the same way on every page.

A send by user id reaches the portal's recipients. ``to_all_user`` reaches every member of the
department's DingTalk organisation and ``dept_id_list`` every member of the listed departments
and below (dingtalk-api.md §2.1), portal recipients or not: their reach is the directory's
member count (``audiences.membercount``, stored by the directory sync or the member count, with
the time it was counted). So:

- an organisation-wide send is chosen only when the organisation was counted, and either nobody
  in the department opted out or the department's policy (``broadcast_to_all_members``) says a
  citywide broadcast goes to every member; otherwise the planner sends by department or batch;
- the pre-flight, the approvers' confirmation, the two-approver rule, the dashboard and the
  audit all read ``Reach`` from here (``notice_reach`` / ``reach_for``).

Such sends have no per-person read lists (getsendresult answers only for <= 100 ids);
``per_person_reads`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, OuterRef, Subquery

from accounts.models import Department
from audiences.membercount import member_counts
from audiences.models import Recipient, RecipientChannel, SubscriptionState
from delivery import deptwide, planning
from delivery.governor import GovernorUnavailable
from delivery.models import Batch, BatchStatus, Dispatch
from delivery.quota import monthly_calls_left, org_wide_sends_today
from notices.models import COMPANION_KINDS, Notice, Tier


class ReachScope:
    RECIPIENTS = "recipients"  # the portal's recipients, by user id
    ORGANISATION = "organisation"  # every member of the DingTalk organisation
    DEPARTMENTS = "departments"  # every member of the chosen DingTalk departments


BROADCAST_STRATEGIES = (planning.Strategy.ORG_WIDE, planning.Strategy.DEPT_WIDE)


@dataclass(frozen=True)
class Reach:
    count: int  # people the send reaches
    scope: str
    strategy: str
    portal_recipients: int
    counted_at: datetime | None  # when the directory was counted (broadcast scopes)
    all_members_policy: bool

    @property
    def per_person_reads(self) -> bool:
        return self.strategy not in BROADCAST_STRATEGIES

    @property
    def beyond_recipients(self) -> int:
        return max(0, self.count - self.portal_recipients)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reach": self.count,
            "reach_scope": self.scope,
            "reach_strategy": self.strategy,
            "portal_recipients": self.portal_recipients,
            "reach_counted_at": self.counted_at.isoformat() if self.counted_at else None,
            "beyond_recipients": self.beyond_recipients,
            "all_members_policy": self.all_members_policy,
            "per_person_reads": self.per_person_reads,
        }


def opted_out_exists(department_id: int) -> bool:
    """Any DingTalk member of the department who is not a subscribed, non-erased recipient
    (Service Window followers are not in the organisation a to_all_user send reaches)."""
    return (
        Recipient.objects.filter(department_id=department_id, channel=RecipientChannel.MEMBER)
        .exclude(subscription_state=SubscriptionState.SUBSCRIBED, erased_at__isnull=True)
        .exists()
    )


def org_wide_possible(department: Department, *, tier: str, requires_confirmation: bool) -> bool:
    """to_all_user only for a citywide broadcast, to a counted organisation, reaching nobody who
    opted out unless the department's policy sends emergency broadcasts to every member."""
    if tier != Tier.CITYWIDE or requires_confirmation:
        return False
    counts = member_counts(department)
    if counts is None:
        return False  # what it would reach is unknown
    if counts.total > int(settings.DELIVERY_LIMITS["max_reach_per_call"]):
        # One call reaches at most 5,000 people, and no more than 5,000 a minute: DingTalk
        # would drop the rest (143103). Department lists or batches reach everyone.
        return False
    return department.broadcast_to_all_members or not opted_out_exists(department.pk)


def choose_strategy(
    department: Department, *, tier: str, requires_confirmation: bool, companion: bool
) -> tuple[str, deptwide.DeptWidePlan | None]:
    """The send strategy on what the database says now, and the department-wide layout if any.

    DingTalk allows three to_all_user calls a day, and a file or voice notice needs two (the
    media and its companion card), so it counts as one more used. The department layout
    (several queries) is only worked out when an organisation-wide send is out of the question.
    """
    possible = org_wide_possible(department, tier=tier, requires_confirmation=requires_confirmation)
    used = org_wide_sends_today(department) + int(companion) if possible else 0
    layout = None
    if not possible or used >= planning.ORG_WIDE_SENDS_PER_DAY:
        stand_in = Notice(
            department=department, tier=tier, requires_confirmation=requires_confirmation
        )
        layout = deptwide.dept_wide_plan(stand_in)
    strategy = planning.choose_strategy(
        tier=tier,
        tracked=tier != Tier.CITYWIDE,
        org_wide_possible=possible,
        dept_ids=layout.dept_ids if layout is not None else None,
        personal_links=requires_confirmation,
        org_wide_used_today=used,
    )
    return strategy, (layout if strategy == planning.Strategy.DEPT_WIDE else None)


def notice_strategy(notice: Notice) -> str:
    return choose_strategy(
        notice.department,
        tier=notice.tier,
        requires_confirmation=notice.requires_confirmation,
        companion=notice.kind in COMPANION_KINDS,
    )[0]


def reach_for(
    department: Department,
    *,
    strategy: str,
    portal_recipients: int,
    layout: deptwide.DeptWidePlan | None = None,
) -> Reach:
    """What ``strategy`` reaches: the directory's members for broadcasts, else the recipients."""
    counts = member_counts(department) if strategy in BROADCAST_STRATEGIES else None
    policy = bool(department.broadcast_to_all_members)
    if strategy == planning.Strategy.ORG_WIDE and counts is not None:
        return Reach(
            counts.total, ReachScope.ORGANISATION, strategy, portal_recipients,
            counts.counted_at, policy,
        )  # fmt: skip
    if strategy == planning.Strategy.DEPT_WIDE and layout is not None:
        by_dept = counts.by_dept if counts is not None else {}
        members = sum(by_dept.get(d, 0) for d in layout.dept_ids)
        # Departments counted before member counts were stored: their audience members at least.
        count = max(members, layout.size, portal_recipients)
        return Reach(
            count, ReachScope.DEPARTMENTS, strategy, portal_recipients,
            counts.counted_at if counts else None, policy,
        )  # fmt: skip
    return Reach(
        portal_recipients, ReachScope.RECIPIENTS, strategy, portal_recipients, None, policy
    )


def notice_reach(notice: Notice, *, portal_recipients: int) -> Reach:
    """The notice's reach now (``portal_recipients``: its audience as the portal counts it)."""
    strategy, layout = choose_strategy(
        notice.department,
        tier=notice.tier,
        requires_confirmation=notice.requires_confirmation,
        companion=notice.kind in COMPANION_KINDS,
    )
    return reach_for(
        notice.department, strategy=strategy, portal_recipients=portal_recipients, layout=layout
    )


def fast_receipts_allowed(
    department: Department,
    *,
    tier: str,
    strategy: str,
    recipients: int,
    companion: bool = False,
    reminders: int = 0,
) -> bool:
    """Poll a small closed-loop notice's receipts sooner (planning.FAST_RECEIPT_POLL_OFFSETS_S)
    when the month's metered calls left cover its calls with the longer schedule."""
    if not planning.is_closed_loop(tier) or strategy in BROADCAST_STRATEGIES:
        return False
    if not 0 < recipients <= planning.FAST_RECEIPTS_MAX_PEOPLE:
        return False
    try:
        left = monthly_calls_left(department)
    except GovernorUnavailable:
        return False
    messages = 2 if companion else 1
    tasks = messages * planning.send_calls(strategy=strategy, recipients=recipients, messages=3)
    calls = tasks + planning.receipt_calls(strategy=strategy, tracked_tasks=tasks, fast=True)
    return calls * (1 + max(0, reminders)) <= left


def _poll_times(plan: Any) -> dict[str, datetime | None]:
    """When the plan's receipts were last polled and are next due: per message (dispatch), the
    newest and the soonest batch by an index (batch_dispatch_polled_idx, batch_dispatch_due_idx),
    so a poll of the dashboard costs the same for 100 people as for a million (10,000 batches
    were scanned on every poll)."""
    in_dispatch = Batch.objects.filter(dispatch=OuterRef("pk"))
    last = in_dispatch.filter(last_polled_at__isnull=False).order_by("-last_polled_at")
    due = in_dispatch.filter(
        status=BatchStatus.ACCEPTED, receipts_done=False, next_poll_at__isnull=False
    ).order_by("next_poll_at")
    times = (
        Dispatch.objects.filter(plan=plan)
        .annotate(
            last=Subquery(last.values("last_polled_at")[:1]),
            due=Subquery(due.values("next_poll_at")[:1]),
        )
        .values_list("last", "due")
    )
    lasts = [at for at, _due in times if at is not None]
    dues = [at for _at, at in times if at is not None]
    return {"last": max(lasts, default=None), "next": min(dues, default=None)}


def plan_reach(plan: Any) -> dict[str, Any]:
    """The dashboard's reach and receipt keys of a plan: what the send reaches (stored when the
    plan started), whether DingTalk reports per-person reads, what getsendprogress said, and
    when receipts were last and will next be polled (reads are seen at polls, not as they
    happen). A handful of aggregate queries over the plan's batches."""
    scope = plan.reach_scope or ReachScope.RECIPIENTS
    per_person = plan.strategy not in BROADCAST_STRATEGIES
    batches = Batch.objects.filter(dispatch__plan=plan)
    polls = _poll_times(plan)
    progress = None
    if not per_person:
        figures = batches.filter(to_all=True) if scope == ReachScope.ORGANISATION else batches
        row = figures.exclude(task_id__isnull=True).aggregate(
            tasks=Count("pk"), polled=Count("send_progress"), low=Min("send_progress")
        )
        progress = {
            "tasks": row["tasks"],
            "polled": row["polled"],
            "percent": row["low"] if row["polled"] else None,
            "done": bool(row["tasks"]) and row["polled"] == row["tasks"] and row["low"] == 100,
        }
    return {
        "reach": plan.reach if plan.reach is not None else plan.planned,
        "reach_scope": scope,
        "reach_counted_at": plan.reach_counted_at.isoformat() if plan.reach_counted_at else None,
        "per_person_reads": per_person,
        "send_progress": progress,
        "last_poll_at": polls["last"].isoformat() if polls["last"] else None,
        "next_poll_at": polls["next"].isoformat() if polls["next"] else None,
        "fast_receipts": plan.fast_receipts,
    }
