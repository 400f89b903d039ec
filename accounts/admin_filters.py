"""Admin list filters that never offer another department's name."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts import permissions as perms
from accounts.selectors import department_list_for_user


class DepartmentScopeFilter(admin.SimpleListFilter):
    """Filter by department, listing only the departments where the user holds `perm`.

    Django's plain `list_filter = ["department"]` lists every department in the sidebar, which
    would leak their existence; use this instead. Subclass and set `perm` / `field_path`.
    """

    title = _("department")
    parameter_name = "department"
    perm = perms.VIEW_SPACE
    field_path = "department"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (d.code, str(d)) for d in department_list_for_user(user=request.user, perm=self.perm)
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return queryset.filter(**{f"{self.field_path}__code": self.value()})
        return queryset


class AdministeredDepartmentFilter(DepartmentScopeFilter):
    perm = perms.ADMINISTER_DEPARTMENT
