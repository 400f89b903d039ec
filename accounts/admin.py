"""Back office for departments, staff and roles. Every write goes through accounts.services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import permissions as perms
from accounts import selectors, services
from accounts.admin_filters import AdministeredDepartmentFilter
from accounts.models import Department, Membership
from common.errors import ApplicationError
from common.types import staff_user


@admin.register(Department)
class DepartmentAdmin(admin.ModelAdmin[Department]):
    list_display = [
        "code",
        "name_en",
        "name_zh",
        "dingtalk_agent_id",
        "dingtalk_edition",
        "is_active",
    ]
    search_fields = ["code", "name_en", "name_zh"]
    readonly_fields = ["code", "created_at", "is_active"]
    fields = [
        "code",
        "name_en",
        "name_zh",
        "dingtalk_agent_id",
        "dingtalk_app_key",
        "dingtalk_secret_ref",
        "dingtalk_edition",
        "is_active",
        "created_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Department]:
        return selectors.department_list_for_user(
            user=request.user, perm=perms.ADMINISTER_DEPARTMENT
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Department | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Department | None = None) -> bool:
        if obj is None:
            return super().has_change_permission(request)
        return perms.has_department_perm(request.user, perms.ADMINISTER_DEPARTMENT, obj)

    def save_model(self, request: HttpRequest, obj: Department, form: Any, change: bool) -> None:
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        services.department_update(actor=staff_user(request), department=obj, changes=changes)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    list_display = ["user", "department", "role", "granted_by", "granted_at"]
    list_filter = ["role", AdministeredDepartmentFilter]
    list_select_related = ["user", "department", "granted_by"]
    search_fields = ["user__username", "user__first_name", "user__last_name"]
    autocomplete_fields = ["user"]
    fields = ["user", "department", "role"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return selectors.membership_list_for_user(user=request.user)

    def has_change_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        # A role is granted or revoked, never edited in place: the audit trail stays one event per decision.
        return False

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "department":
            kwargs["queryset"] = selectors.department_list_for_user(
                user=request.user, perm=perms.ADMINISTER_DEPARTMENT
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        try:
            saved = services.membership_grant(
                actor=staff_user(request), user=obj.user, department=obj.department, role=obj.role
            )
        except ApplicationError as exc:
            raise PermissionDenied(exc.message) from None
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        services.membership_revoke(actor=staff_user(request), membership=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset.order_by("pk"):
            services.membership_revoke(actor=staff_user(request), membership=membership)


admin.site.unregister(User)


@admin.register(User)
class StaffAdmin(UserAdmin[User]):
    list_display = ["username", "first_name", "last_name", "email", "is_active", "last_login"]
    list_filter = ["is_active"]
    actions = ["reset_authenticator"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return selectors.user_list_for_user(user=request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> list[str]:
        # Privilege flags are not edited here: roles come only from memberships, through the service.
        return [
            "is_superuser",
            "is_staff",
            "groups",
            "user_permissions",
            "last_login",
            "date_joined",
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return False

    @admin.action(description="Reset authenticator (the person enrols again at next login)")
    def reset_authenticator(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        administered = selectors.department_list_for_user(
            user=request.user, perm=perms.ADMINISTER_DEPARTMENT
        )
        done = 0
        for user in queryset.order_by("pk"):
            membership = (
                Membership.objects.filter(user=user, department__in=administered)
                .select_related("department")
                .first()
            )
            if membership is None:
                continue
            try:
                services.totp_reset(
                    actor=staff_user(request), user=user, department=membership.department
                )
            except PermissionDenied as exc:
                self.message_user(request, f"{user.username}: {exc}", messages.ERROR)
            else:
                done += 1
        self.message_user(request, f"Authenticators reset: {done}.", messages.SUCCESS)
