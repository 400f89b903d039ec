"""Reads scoped to the user, and the trigger figures the approval inbox shows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from accounts import permissions as perms
from accounts.models import Department
from integrations.models import (
    CancellationRequest,
    CancellationState,
    DepartmentTriggerPolicy,
    Integration,
    Trigger,
    WarningMapping,
)
from notices.models import Notice, Status

User = AbstractBaseUser | AnonymousUser

# Once a notice is in one of these, the trigger-to-send clock has stopped.
_CLOCK_STOPPED = frozenset(
    {Status.SENDING, Status.SENT, Status.SENT_WITH_FAILURES, Status.CANCELLED, Status.RECALLED}
)


def integration_list_for_user(*, user: User) -> QuerySet[Integration]:
    """Integrations of the departments the user administers."""
    departments = perms.departments_with_perm(user, perms.ADMINISTER_DEPARTMENT)
    return (
        Integration.objects.filter(department__in=departments)
        .select_related("department", "cap_template")
        .prefetch_related("templates")
        .order_by("department__code", "name")
    )


def integration_get_for_user(*, user: User, pk: int) -> Integration:
    """The integration, or Http404 both when it is missing and when it is another department's."""
    integration = integration_list_for_user(user=user).filter(pk=pk).first()
    if integration is None:
        raise Http404("No such integration.")
    return integration


def warning_mapping_list_for_user(*, user: User) -> QuerySet[WarningMapping]:
    departments = perms.departments_with_perm(user, perms.ADMINISTER_DEPARTMENT)
    return WarningMapping.objects.filter(department__in=departments).select_related(
        "department", "template", "cancel_template"
    )


def trigger_list_for_user(*, user: User) -> QuerySet[Trigger]:
    """Triggers of departments whose notices the user may see."""
    departments = perms.departments_with_perm(
        user, perms.VIEW_NOTICES
    ) | perms.departments_with_perm(user, perms.ADMINISTER_DEPARTMENT)
    return Trigger.objects.filter(department__in=departments).select_related(
        "department", "integration", "template", "notice"
    )


def cancellation_list_for_user(*, user: User) -> QuerySet[CancellationRequest]:
    """Recall requests from CAP Cancels in departments where the user may recall notices."""
    departments = perms.departments_with_perm(user, perms.RECALL_NOTICE)
    return CancellationRequest.objects.filter(notice__department__in=departments).select_related(
        "notice", "trigger", "decided_by"
    )


def cancellation_waiting_for_user(*, user: User) -> QuerySet[CancellationRequest]:
    return cancellation_list_for_user(user=user).filter(
        state=CancellationState.AWAITING_CONFIRMATION
    )


def trigger_target_for(department: Department) -> dt.timedelta:
    """The department's target from trigger to send (five minutes unless it set another)."""
    seconds = (
        DepartmentTriggerPolicy.objects.filter(department=department)
        .values_list("target_seconds", flat=True)
        .first()
    )
    return dt.timedelta(seconds=seconds or settings.INTEGRATIONS_DEFAULT_TARGET_SECONDS)


@dataclass(frozen=True)
class TriggerWait:
    """How long a triggered notice has waited since its trigger, against the department's target."""

    triggered_at: dt.datetime
    waited: dt.timedelta
    target: dt.timedelta
    running: bool

    @property
    def over_target(self) -> bool:
        return self.waited > self.target

    @property
    def share(self) -> float:
        return self.waited / self.target if self.target else 0.0

    @property
    def waited_seconds(self) -> int:
        return int(self.waited.total_seconds())

    @property
    def target_seconds(self) -> int:
        return int(self.target.total_seconds())


def trigger_wait_for(notice: Notice, *, now: dt.datetime | None = None) -> TriggerWait | None:
    """None for a notice no trigger prepared. The clock stops once sending starts."""
    if notice.triggered_at is None:
        return None
    now = now or timezone.now()
    running = notice.status not in _CLOCK_STOPPED
    end = now if running else (notice.updated_at or now)
    return TriggerWait(
        triggered_at=notice.triggered_at,
        waited=max(dt.timedelta(0), end - notice.triggered_at),
        target=trigger_target_for(notice.department),
        running=running,
    )
