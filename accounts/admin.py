"""Back office for departments, staff and roles. Every write goes through accounts.services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import credentials, selectors, services
from accounts import permissions as perms
from accounts.admin_filters import AdministeredDepartmentFilter
from accounts.models import ChangeState, Department, Membership, PrivilegedChange
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
        "reach_growth_percent",
        "broadcast_to_all_members",
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
            saved = credentials.role_grant_request(
                actor=staff_user(request),
                user=obj.user,
                department=obj.department,
                role=obj.role,
                path="admin",
            )
        except (ApplicationError, PermissionDenied) as exc:
            # The admin's own transaction rolls back the service's record of the refusal:
            # add_view writes it again once that has happened.
            request._refused_grant = (obj, exc)  # type: ignore[attr-defined]
            raise PermissionDenied(getattr(exc, "message", None) or str(exc)) from None
        if isinstance(saved, PrivilegedChange):
            # An approving role: nothing is granted until a second system administrator agrees.
            request._pending_change = saved  # type: ignore[attr-defined]
            return
        obj.pk = saved.pk

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().add_view(request, form_url, extra_context)
        except PermissionDenied:
            refused = getattr(request, "_refused_grant", None)
            if refused is not None:
                obj, exc = refused
                credentials.audit_refused(
                    actor=staff_user(request),
                    path="admin",
                    operation="role_grant",
                    code=str(getattr(exc, "code", None) or "permission_denied"),
                    reason=str(getattr(exc, "message", None) or exc),
                    target=obj.user,
                )
            raise

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if getattr(request, "_pending_change", None) is not None:
            return None
        return super().log_addition(request, obj, message)

    def response_add(
        self, request: HttpRequest, obj: Membership, post_url_continue: str | None = None
    ) -> HttpResponse:
        pending = getattr(request, "_pending_change", None)
        if pending is None:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(
            request,
            _("The role waits for a second system administrator's approval."),
            messages.WARNING,
        )
        return HttpResponseRedirect(reverse("admin:accounts_privilegedchange_changelist"))

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
    actions = ["reset_credentials"]

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

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        """Nobody sets another person's password: refused and audited (a reset sends the person
        a one-time enrolment link instead)."""
        target = User.objects.filter(pk=id).first() if str(id).isdigit() else None
        credentials.audit_refused(
            actor=staff_user(request),
            path="admin",
            operation="password_set",
            code="password_set_refused",
            reason="Staff never set another person's password; reset their credentials instead.",
            target=target or f"user {id}",
        )
        raise PermissionDenied(
            _("Nobody sets another person's password: reset their credentials instead.")
        )

    @admin.action(
        description=gettext_lazy("Reset credentials (one-time enrolment link to the person)")
    )
    def reset_credentials(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        administered = selectors.department_list_for_user(
            user=request.user, perm=perms.ADMINISTER_DEPARTMENT
        )
        done = waiting = 0
        for user in queryset.order_by("pk"):
            membership = (
                Membership.objects.filter(user=user, department__in=administered)
                .select_related("department")
                .first()
            )
            if membership is None:
                continue
            try:
                change = credentials.credentials_reset_request(
                    actor=staff_user(request),
                    user=user,
                    department=membership.department,
                    path="admin",
                )
            except (PermissionDenied, ApplicationError) as exc:
                self.message_user(request, f"{user.username}: {exc}", messages.ERROR)
            else:
                if change.state == ChangeState.PENDING:
                    waiting += 1
                else:
                    done += 1
        self.message_user(
            request,
            _("Credentials reset: %(done)d; waiting for a second administrator: %(waiting)d.")
            % {"done": done, "waiting": waiting},
            messages.SUCCESS,
        )


@admin.register(PrivilegedChange)
class PrivilegedChangeAdmin(admin.ModelAdmin[PrivilegedChange]):
    """Credential resets of approvers and approving-role grants waiting for a second system
    administrator: approved or refused here, never edited."""

    list_display = ["kind", "user", "department", "role", "state", "requested_by", "requested_at"]
    list_filter = ["state", "kind"]
    list_select_related = ["user", "department", "requested_by"]
    actions = ["approve_changes", "refuse_changes"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PrivilegedChange]:
        administered = selectors.department_list_for_user(
            user=request.user, perm=perms.ADMINISTER_DEPARTMENT
        )
        return super().get_queryset(request).filter(department__in=administered)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in PrivilegedChange._meta.fields]

    def _decide(self, request: HttpRequest, queryset: QuerySet[PrivilegedChange], ok: bool) -> None:
        done = 0
        for change in queryset.order_by("pk"):
            try:
                if ok:
                    credentials.privileged_change_approve(
                        actor=staff_user(request), change=change, path="admin"
                    )
                else:
                    credentials.privileged_change_refuse(
                        actor=staff_user(request),
                        change=change,
                        reason="Refused in the back office",
                        path="admin",
                    )
            except (PermissionDenied, ApplicationError) as exc:
                self.message_user(request, f"#{change.pk}: {exc}", messages.ERROR)
            else:
                done += 1
        self.message_user(request, _("Decided: %(n)d.") % {"n": done}, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Approve (as the second system administrator)"))
    def approve_changes(self, request: HttpRequest, queryset: QuerySet[PrivilegedChange]) -> None:
        self._decide(request, queryset, ok=True)

    @admin.action(description=gettext_lazy("Refuse"))
    def refuse_changes(self, request: HttpRequest, queryset: QuerySet[PrivilegedChange]) -> None:
        self._decide(request, queryset, ok=False)
