"""Reads of the trail, scoped to the reader: nothing outside their departments is returned or admitted to exist.

Auditors read (VIEW_AUDIT) and export (EXPORT_AUDIT) their departments' events; a system
administrator holds VIEW_AUDIT for their own department only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, fields
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts import permissions as perms
from accounts.models import Department
from audit.models import AuditEvent, AuditExport

Reader = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class EventFilters:
    """Cleaned filters, JSON-safe so an export task and the audit event can carry them."""

    date_from: str = ""  # ISO dates, inclusive
    date_to: str = ""
    department: str = ""  # department code
    actor: str = ""  # username as recorded (actor_label)
    action: str = ""
    target_type: str = ""
    target_id: str = ""
    q: str = ""

    def as_dict(self) -> dict[str, str]:
        """Only the filters that are set."""
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EventFilters:
        names = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in data.items() if k in names})


def audit_departments_for_user(
    *, user: Reader, perm: str = perms.VIEW_AUDIT
) -> QuerySet[Department]:
    return perms.departments_with_perm(user, perm).order_by("code")


def event_list_for_user(*, user: Reader, perm: str = perms.VIEW_AUDIT) -> QuerySet[AuditEvent]:
    """Events of the departments where `user` holds `perm` (VIEW_AUDIT or EXPORT_AUDIT)."""
    # Ids as a literal list: the (department, sequence) index then serves each page directly.
    department_ids = list(perms.departments_with_perm(user, perm).values_list("pk", flat=True))
    return AuditEvent.objects.filter(department_id__in=department_ids)


def event_get_for_user(*, user: Reader, pk: int) -> AuditEvent:
    event = event_list_for_user(user=user).select_related("department").filter(pk=pk).first()
    if event is None:
        raise Http404("No such audit event.")
    return event


def _day_start(value: str) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(dt.date.fromisoformat(value), dt.time.min))


def events_filter(queryset: QuerySet[AuditEvent], filters: EventFilters) -> QuerySet[AuditEvent]:
    if filters.date_from:
        queryset = queryset.filter(occurred_at__gte=_day_start(filters.date_from))
    if filters.date_to:
        next_day = (dt.date.fromisoformat(filters.date_to) + dt.timedelta(days=1)).isoformat()
        queryset = queryset.filter(occurred_at__lt=_day_start(next_day))
    if filters.department:
        queryset = queryset.filter(department__code=filters.department)
    if filters.actor:
        queryset = queryset.filter(actor_label=filters.actor)
    if filters.action:
        queryset = queryset.filter(action=filters.action)
    if filters.target_type:
        queryset = queryset.filter(target_type=filters.target_type)
    if filters.target_id:
        queryset = queryset.filter(target_id=filters.target_id)
    if filters.q:
        queryset = queryset.filter(
            Q(target_label__icontains=filters.q)
            | Q(actor_label__icontains=filters.q)
            | Q(action__icontains=filters.q)
            | Q(target_id=filters.q)
        )
    return queryset


@dataclass(frozen=True)
class EventPage:
    events: list[AuditEvent]
    newer: int | None  # pass as ?after= to see newer events
    older: int | None  # pass as ?before= to see older events


def events_page(
    queryset: QuerySet[AuditEvent], *, before: int | None, after: int | None, size: int
) -> EventPage:
    """One page, newest first, by keyset on the sequence: no COUNT and no OFFSET on a huge table."""
    if after is not None:
        rows = list(queryset.filter(sequence__gt=after).order_by("sequence")[: size + 1])
        more_newer = len(rows) > size
        events = list(reversed(rows[:size]))
        return EventPage(
            events=events,
            newer=events[0].sequence if events and more_newer else None,
            older=events[-1].sequence if events else None,
        )
    if before is not None:
        queryset = queryset.filter(sequence__lt=before)
    rows = list(queryset.order_by("-sequence")[: size + 1])
    events = rows[:size]
    return EventPage(
        events=events,
        newer=events[0].sequence if events and before is not None else None,
        older=events[-1].sequence if len(rows) > size else None,
    )


def export_get_for_user(*, user: Reader, export_id: str) -> AuditExport:
    """The user's own export, while they may still export; Http404 otherwise."""
    if (
        not user.is_authenticated
        or not perms.departments_with_perm(user, perms.EXPORT_AUDIT).exists()
    ):
        raise Http404("No such export.")
    export = AuditExport.objects.filter(pk=export_id, requested_by_id=user.pk).first()
    if export is None:
        raise Http404("No such export.")
    return export
