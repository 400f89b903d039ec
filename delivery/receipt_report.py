"""The per-notice receipt report: who was targeted, their state, first read and confirmation.

For auditors (VIEW_AUDIT to read, EXPORT_AUDIT to export, in the notice's department);
anyone else gets 404 for the notice, as for any other department's object. Names and
DingTalk user ids are shown; full mobile numbers only to holders of VIEW_CONTACT_DETAILS in
that department (everyone else sees the masked form). Exports use the audit trail's own
machinery (audit.reports, where DeliveryConfig.ready() registers this report as "receipts"):
streamed CSV/JSON when small, a background `audit.export_events` task for XLSX and large
reports, every cell neutralised, each export recorded as `audit.exported`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import connection
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from accounts import permissions as perms
from audiences.models import mask_mobile
from audit.export_jobs import ExportStart
from audit.reports import REPORT_KEY, Report, report_export_start
from delivery.models import (
    Delivery,
    DeliveryPlan,
    DeliveryState,
    effective_accepted_at,
    effective_state,
    effective_state_in,
)
from delivery.receipt_copy import receipts_csv_copy
from delivery.rollups import plan_rollup
from notices.models import Notice

Reader = AbstractBaseUser | AnonymousUser

# The name this report is registered under in audit.reports (data.report of its events).
REPORT_RECEIPTS = "receipts"
PAGE_ROWS = 5000


class Confirmed(StrEnum):
    """The values of the confirmation filter ("" means either)."""

    YES = "yes"
    NO = "no"


HEADERS = [
    "delivery_id",
    "dingtalk_user_id",
    "name",
    "mobile",
    "state",
    "state_name",
    "accepted_at",
    "first_read_at",
    "confirmed_at",
    "reminders_sent",
]

# Lazy labels: each reader (and each export) gets the states in their own language.
_STATE_NAMES = dict(DeliveryState.choices)


@dataclass(frozen=True)
class ReceiptFilters:
    """Cleaned filters of one notice's report, JSON-safe for the export task and the event."""

    state: str = ""  # a DeliveryState value
    confirmed: str = ""  # a Confirmed value, or "" for either

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReceiptFilters:
        names = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in data.items() if k in names})


def notice_get_for_auditor(*, user: Reader, notice_id: int, perm: str = perms.VIEW_AUDIT) -> Notice:
    """The notice, if `user` holds `perm` (or EXPORT_AUDIT) in its department; Http404 otherwise."""
    codes = {perm, perms.EXPORT_AUDIT} if perm == perms.VIEW_AUDIT else {perm}
    department_ids: set[int] = set()
    for codename in codes:
        department_ids.update(
            perms.departments_with_perm(user, codename).values_list("pk", flat=True)
        )
    notice = (
        Notice.objects.select_related("department")
        .filter(pk=notice_id, department_id__in=department_ids)
        .first()
    )
    if notice is None:
        raise Http404("No such notice.")
    return notice


def notice_plan(notice: Notice) -> DeliveryPlan | None:
    return DeliveryPlan.objects.filter(notice=notice).first()


def receipts_filter(notice: Notice, filters: ReceiptFilters) -> QuerySet[Delivery]:
    plan_id = DeliveryPlan.objects.filter(notice=notice).values_list("pk", flat=True).first()
    # By the plan's id rather than a join to the plan: PostgreSQL then knows how many people
    # it will read (through the join it guessed 9,000 of a million, and looked each person's
    # name up on its own: most of a million-person report's time).
    people = Delivery.objects.filter(plan_id=plan_id) if plan_id else Delivery.objects.none()
    queryset = people.annotate(now_state=effective_state(), sent_at=effective_accepted_at())
    if filters.state:
        queryset = queryset.filter(effective_state_in((filters.state,)))
    if filters.confirmed == Confirmed.YES:
        queryset = queryset.filter(confirmed_at__isnull=False)
    elif filters.confirmed == Confirmed.NO:
        queryset = queryset.filter(confirmed_at__isnull=True)
    return queryset


def state_counts(notice: Notice) -> list[tuple[str, str, int]]:
    """(state, its name, how many) for every state the notice's people are in (the rollups)."""
    plan = notice_plan(notice)
    if plan is None:
        return []
    states = plan_rollup(plan.pk, kinds=("s",)).states
    return [(s, str(_STATE_NAMES.get(s, s)), n) for s, n in sorted(states.items())]


def confirmed_count(notice: Notice) -> int:
    plan = notice_plan(notice)
    return plan_rollup(plan.pk, kinds=("c",)).confirmed if plan is not None else 0


def may_see_contacts(user: Reader, notice: Notice) -> bool:
    return perms.has_department_perm(user, perms.VIEW_CONTACT_DETAILS, notice.department)


_COLUMNS = (
    "pk",
    "dingtalk_user_id",
    "recipient__name",
    "recipient__mobile",
    "recipient__erased_at",
    "now_state",  # annotated by receipts_filter, as sent_at: see delivery.models.effective_state
    "sent_at",
    "first_read_at",
    "confirmed_at",
    "reminders_sent",
)


def _local(value: dt.datetime | None, zone: Any) -> str:
    return value.astimezone(zone).isoformat() if value is not None else ""


def receipt_row(values: tuple[Any, ...], *, contacts: bool, zone: Any) -> list[Any]:
    """One report row from a `_COLUMNS` tuple; erased people keep their state but not their name."""
    pk, userid, name, mobile, erased_at, state, accepted, read, confirmed, reminders = values
    if erased_at is not None:
        name, mobile = "", ""
    return [
        pk,
        userid,
        name or "",
        (mobile or "") if contacts else mask_mobile(mobile or ""),
        state,
        str(_STATE_NAMES.get(state, state)),
        _local(accepted, zone),
        _local(read, zone),
        _local(confirmed, zone),
        reminders,
    ]


@dataclass(frozen=True)
class ReceiptPage:
    rows: list[list[Any]]
    older: int | None  # pass as ?after= for the next page


def receipts_page(
    queryset: QuerySet[Delivery], *, contacts: bool, after: int | None, size: int
) -> ReceiptPage:
    """One page in delivery order, by keyset on the id (no OFFSET on a million-person notice)."""
    if after is not None:
        queryset = queryset.filter(pk__gt=after)
    values = list(queryset.order_by("pk").values_list(*_COLUMNS)[: size + 1])
    zone = timezone.get_current_timezone()
    rows = [receipt_row(v, contacts=contacts, zone=zone) for v in values[:size]]
    return ReceiptPage(rows=rows, older=values[size - 1][0] if len(values) > size else None)


def receipt_rows(
    queryset: QuerySet[Delivery], *, contacts: bool, page_rows: int = PAGE_ROWS
) -> Iterator[list[Any]]:
    """Every row of the report in delivery order, one keyset page in memory at a time."""
    zone = timezone.get_current_timezone()
    after = 0
    while True:
        page = list(queryset.filter(pk__gt=after).order_by("pk").values_list(*_COLUMNS)[:page_rows])
        if not page:
            return
        for values in page:
            yield receipt_row(values, contacts=contacts, zone=zone)
        after = page[-1][0]


# --- export (through audit.reports) -----------------------------------------------------------


def receipts_report(actor: User, params: dict[str, Any]) -> Report:
    """The report of `params["notice"]` with the filters in `params`, for `actor` to export.

    Registered with audit.reports under REPORT_RECEIPTS. Permission: EXPORT_AUDIT in the
    notice's department (Http404 otherwise); full mobiles with VIEW_CONTACT_DETAILS there.
    """
    notice = notice_get_for_auditor(
        user=actor, notice_id=int(params["notice"]), perm=perms.EXPORT_AUDIT
    )
    filters = ReceiptFilters.from_dict(params)
    contacts = may_see_contacts(actor, notice)
    queryset = receipts_filter(notice, filters)
    return Report(
        name=REPORT_RECEIPTS,
        subject={"notice": notice.pk},
        filters=filters.as_dict(),
        file_stem=f"notice-{notice.pk}-receipts",
        title="Receipts",
        headers=HEADERS,
        queryset=queryset,
        rows=lambda: receipt_rows(queryset, contacts=contacts),
        target=notice,
        department=notice.department,
        event_extra={"full_mobiles": contacts},
        csv_copy=(
            (
                lambda on_rows: receipts_csv_copy(
                    queryset, HEADERS, contacts=contacts, on_rows=on_rows
                )
            )
            if connection.vendor == "postgresql"
            else None
        ),
    )


def receipts_export_start(
    *, actor: User, notice_id: int, filters: ReceiptFilters, fmt: str
) -> ExportStart:
    """Start an export of one notice's receipt report.

    Permission: EXPORT_AUDIT in the notice's department (Http404 otherwise, as for the page).
    Audit: audit.exported (report, notice, filters, format, rows) before a streamed export's
    first byte, or when a background export's file is complete. Side effect: enqueues
    audit.export_events for XLSX and for reports above AUDIT_EXPORT_SYNC_MAX_ROWS.
    """
    return report_export_start(
        actor=actor,
        params={REPORT_KEY: REPORT_RECEIPTS, "notice": notice_id, **filters.as_dict()},
        fmt=fmt,
    )
