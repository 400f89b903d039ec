"""Back office: warning mappings (edited here), and read-only views of integrations and triggers.

Integrations themselves are created on a purpose-built page (the secret is shown once there);
every write here goes through integrations.services.warning_mappings so permission and audit apply.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import permissions as perms
from accounts.admin_filters import AdministeredDepartmentFilter
from accounts.models import Department
from audiences.models import Segment
from common.types import staff_user
from integrations import selectors
from integrations.models import CancellationRequest, Integration, Trigger, WarningMapping
from integrations.services import warning_mappings
from notices.models import NoticeTemplate


def _administered(request: HttpRequest) -> QuerySet[Department]:
    return perms.departments_with_perm(request.user, perms.ADMINISTER_DEPARTMENT)


@admin.register(WarningMapping)
class WarningMappingAdmin(admin.ModelAdmin[WarningMapping]):
    list_display = ["code_pattern", "department", "template", "cancel_template", "tier", "active"]
    list_filter = ["active", "tier", AdministeredDepartmentFilter]
    list_select_related = ["department", "template", "cancel_template"]
    search_fields = ["code_pattern"]
    fields = [
        "department",
        "code_pattern",
        "template",
        "cancel_template",
        "tier",
        "segments",
        "active",
    ]
    filter_horizontal = ["segments"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WarningMapping]:
        return selectors.warning_mapping_list_for_user(user=request.user)

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> forms.ModelChoiceField[Any] | None:
        departments = _administered(request)
        if db_field.name == "department":
            kwargs["queryset"] = departments
        elif db_field.name in {"template", "cancel_template"}:
            kwargs["queryset"] = NoticeTemplate.objects.filter(department__in=departments)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> forms.ModelMultipleChoiceField[Any] | None:
        if db_field.name == "segments":
            kwargs["queryset"] = Segment.objects.filter(department__in=_administered(request))
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_change_permission(
        self, request: HttpRequest, obj: WarningMapping | None = None
    ) -> bool:
        if obj is None:
            return super().has_change_permission(request)
        return perms.has_department_perm(request.user, perms.ADMINISTER_DEPARTMENT, obj.department)

    def has_delete_permission(
        self, request: HttpRequest, obj: WarningMapping | None = None
    ) -> bool:
        if obj is None:
            return super().has_delete_permission(request)
        return perms.has_department_perm(request.user, perms.ADMINISTER_DEPARTMENT, obj.department)

    def save_model(
        self, request: HttpRequest, obj: WarningMapping, form: Any, change: bool
    ) -> None:
        warning_mappings.warning_mapping_save(actor=staff_user(request), mapping=obj)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The mapping row is saved (and audited) by the service; the audience follows.
        form.instance.segments.set(form.cleaned_data["segments"])

    def delete_model(self, request: HttpRequest, obj: WarningMapping) -> None:
        warning_mappings.warning_mapping_delete(actor=staff_user(request), mapping=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WarningMapping]) -> None:
        for mapping in queryset:
            warning_mappings.warning_mapping_delete(actor=staff_user(request), mapping=mapping)


class _ReadOnly(admin.ModelAdmin[Any]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Integration)
class IntegrationAdmin(_ReadOnly):
    list_display = ["name", "slug", "department", "active", "rate_limit_per_minute", "last_used_at"]
    list_filter = ["active", AdministeredDepartmentFilter]
    list_select_related = ["department"]
    fields = [
        "department",
        "name",
        "slug",
        "active",
        "rate_limit_per_minute",
        "secret_hint",
        "secret_rotated_at",
        "last_used_at",
        "created_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Integration]:
        return selectors.integration_list_for_user(user=request.user)


@admin.register(Trigger)
class TriggerAdmin(_ReadOnly):
    list_display = ["triggered_at", "source", "key", "department", "integration", "notice"]
    list_filter = ["source", AdministeredDepartmentFilter]
    list_select_related = ["department", "integration", "notice"]
    fields = [
        "public_id",
        "department",
        "integration",
        "source",
        "key",
        "template",
        "notice",
        "values",
        "triggered_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Trigger]:
        return selectors.trigger_list_for_user(user=request.user).filter(
            department__in=_administered(request)
        )


class _CancellationDepartmentFilter(AdministeredDepartmentFilter):
    field_path = "notice__department"


@admin.register(CancellationRequest)
class CancellationRequestAdmin(_ReadOnly):
    list_display = ["requested_at", "notice", "state", "decided_by", "decided_at"]
    list_filter = ["state", _CancellationDepartmentFilter]
    list_select_related = ["notice", "decided_by"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[CancellationRequest]:
        return CancellationRequest.objects.filter(
            notice__department__in=_administered(request)
        ).select_related("notice", "decided_by")
