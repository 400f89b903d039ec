"""Back office: each department's retention periods, changed through the audited service."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import permissions as perms
from operations import retention
from operations.models import RetentionPolicy


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin[RetentionPolicy]):
    list_display = ["department", "location_days", "person_rows_days", "updated_at"]
    fields = ["department", "location_days", "person_rows_days"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[RetentionPolicy]:
        administered = perms.departments_with_perm(request.user, perms.ADMINISTER_DEPARTMENT)
        return super().get_queryset(request).filter(department__in=administered)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "department":
            kwargs["queryset"] = perms.departments_with_perm(
                request.user, perms.ADMINISTER_DEPARTMENT
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_readonly_fields(
        self, request: HttpRequest, obj: RetentionPolicy | None = None
    ) -> list[str]:
        return ["department"] if obj is not None else []

    def save_model(
        self, request: HttpRequest, obj: RetentionPolicy, form: Any, change: bool
    ) -> None:
        saved = retention.retention_policy_set(
            actor=request.user,
            department=obj.department,
            location_days=obj.location_days,
            person_rows_days=obj.person_rows_days,
        )
        obj.pk = saved.pk

    def has_delete_permission(
        self, request: HttpRequest, obj: RetentionPolicy | None = None
    ) -> bool:
        return False
