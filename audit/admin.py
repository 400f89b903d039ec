"""Read-only back office for the trail: scoped to the reader's VIEW_AUDIT departments."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import cached_property
from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts import permissions as perms
from audit import selectors
from audit.actions import registered_actions
from audit.models import AuditEvent

# The changelist counts at most this many rows; the auditors' page (/audit/) pages by keyset.
ADMIN_COUNT_LIMIT = 10_000


class BoundedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Counts no further than ADMIN_COUNT_LIMIT, so a changelist of millions of events stays fast."""

    @cached_property
    def count(self) -> int:
        queryset = cast(QuerySet[AuditEvent], self.object_list)
        return queryset[:ADMIN_COUNT_LIMIT].count()


class DateRangeFilter(admin.ListFilter):
    title = _("date range")
    template = "audit/admin/date_range_filter.html"
    parameters = ("occurred_from", "occurred_to")

    def __init__(
        self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any
    ) -> None:
        super().__init__(request, params, model, model_admin)
        self.dates: dict[str, dt.date] = {}
        for name in self.parameters:
            if name in params:
                raw = params.pop(name)
                value = raw[-1] if isinstance(raw, list) else raw
                self.used_parameters[name] = value
                try:
                    self.dates[name] = dt.date.fromisoformat(value)
                except ValueError as exc:
                    raise IncorrectLookupParameters(exc) from exc

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return list(self.parameters)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        start, end = self.dates.get("occurred_from"), self.dates.get("occurred_to")
        if start:
            queryset = queryset.filter(
                occurred_at__gte=timezone.make_aware(dt.datetime.combine(start, dt.time.min))
            )
        if end:
            after = end + dt.timedelta(days=1)
            queryset = queryset.filter(
                occurred_at__lt=timezone.make_aware(dt.datetime.combine(after, dt.time.min))
            )
        return queryset

    def choices(self, changelist: ChangeList) -> Iterator[Any]:
        others = [(k, v) for k, v in changelist.params.items() if k not in self.parameters]
        yield {
            "from": self.used_parameters.get("occurred_from", ""),
            "to": self.used_parameters.get("occurred_to", ""),
            "others": [(k, v[-1] if isinstance(v, list) else v) for k, v in others],
            "clear_url": changelist.get_query_string(remove=list(self.parameters)),
        }


class DepartmentFilter(admin.SimpleListFilter):
    title = _("department")
    parameter_name = "department"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(d.code, d.code) for d in selectors.audit_departments_for_user(user=request.user)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(department__code=self.value()) if self.value() else queryset


class ActorFilter(admin.SimpleListFilter):
    title = _("actor")
    parameter_name = "actor"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        departments = perms.departments_with_perm(request.user, perms.VIEW_AUDIT)
        staff = (
            get_user_model()
            .objects.filter(memberships__department__in=departments)
            .distinct()
            .order_by("username")
        )
        return [(u.get_username(), u.get_username()) for u in staff[:200]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(actor_label=self.value()) if self.value() else queryset


class ActionFilter(admin.SimpleListFilter):
    title = _("action")
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(registered_actions().items())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(action=self.value()) if self.value() else queryset


class TargetTypeFilter(admin.SimpleListFilter):
    """What the event is about (a department, a role, later a notice); search narrows to one id."""

    title = _("target type")
    parameter_name = "target_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        types = model_admin.get_queryset(request).exclude(target_type="").order_by("target_type")
        return [(t, t) for t in types.values_list("target_type", flat=True).distinct()[:50]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(target_type=self.value()) if self.value() else queryset


_FIELDS: tuple[str, ...] = (
    "sequence",
    "occurred_at",
    "actor_label",
    "actor_department",
    "department_code",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "data",
    "request_id",
    "ip",
    "otp_verified",
    "prev_hash",
    "hash",
)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    list_display = [
        "sequence",
        "occurred_at",
        "actor_label",
        "department_code",
        "action",
        "target_type",
        "target_id",
        "target_label",
        "ip",
        "otp_verified",
    ]
    list_display_links = ["sequence"]
    list_filter = [DateRangeFilter, DepartmentFilter, ActorFilter, ActionFilter, TargetTypeFilter]
    search_fields = ["=target_id", "target_label", "actor_label", "=action"]
    list_select_related = ["department"]
    ordering = ["-sequence"]
    paginator = BoundedCountPaginator
    show_full_result_count = False
    actions = None
    fields = _FIELDS
    readonly_fields = _FIELDS

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        return selectors.event_list_for_user(user=request.user).select_related("department")

    @admin.display(description=_("department"), ordering="department__code")
    def department_code(self, obj: AuditEvent) -> str:
        return obj.department.code if obj.department is not None else "—"

    def has_module_permission(self, request: HttpRequest) -> bool:
        return (
            super().has_module_permission(request)
            and selectors.audit_departments_for_user(user=request.user).exists()
        )

    def has_view_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return (
            super().has_view_permission(request, obj)
            and selectors.audit_departments_for_user(user=request.user).exists()
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
