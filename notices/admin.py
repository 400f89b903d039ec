"""Back office for notices: read-only records scoped by department; every change through services.

Notices are written on the compose page; here supervisors may approve or reject selected
notices with admin actions, which call notices.approval and notices.services exactly as the
pages do (a TOTP code and the reach acknowledgement are asked for on an intermediate page), so
the approval rule holds in the admin as well. Approvals, rejections and contributions cannot be
added or edited.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from accounts import permissions as perms
from accounts.admin_filters import DepartmentScopeFilter
from common.errors import ApplicationError
from notices import approval, selectors, services
from notices.audit_actions import NoticeOperation
from notices.models import Approval, Notice, NoticeContribution, NoticeTemplate, Rejection


class NoticeDepartmentFilter(DepartmentScopeFilter):
    perm = perms.VIEW_NOTICES


class _ReadOnly(admin.ModelAdmin[Any]):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ApprovalInline(admin.TabularInline[Approval, Notice]):
    model = Approval
    extra = 0
    can_delete = False
    fields = [
        "version",
        "approver",
        "approved_at",
        "totp_verified",
        "reach_acknowledged",
        "voided_at",
    ]
    readonly_fields = (
        "version",
        "approver",
        "approved_at",
        "totp_verified",
        "reach_acknowledged",
        "voided_at",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Notice)
class NoticeAdmin(_ReadOnly):
    list_display = [
        "id",
        "title_en",
        "title_zh",
        "department_code",
        "tier",
        "status",
        "version",
        "created_at",
    ]
    list_filter = [NoticeDepartmentFilter, "status", "tier"]
    list_select_related = ["department"]
    search_fields = ["title_en", "title_zh"]
    inlines = [ApprovalInline]
    actions = ["approve_selected", "reject_selected"]
    readonly_fields = (
        "department",
        "tier",
        "status",
        "kind",
        "title_en",
        "title_zh",
        "body_en",
        "body_zh",
        "buttons",
        "version",
        "version_hash",
        "reach",
        "send_at",
        "expires_at",
        "source",
        "created_by",
        "submitted_at",
        "approved_at",
    )
    fields = readonly_fields

    @admin.display(description=_("department"))
    def department_code(self, obj: Notice) -> str:
        return obj.department.code

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notice]:
        return selectors.notice_list_for_user(user=request.user)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        action = request.POST.get("action", "") if request.method == "POST" else ""
        if action in ("approve_selected", "reject_selected"):
            # Notices of other departments are not in the queryset, so the action never sees
            # them; the attempt is still put on record, as on the pages.
            visible = set(self.get_queryset(request).values_list("pk", flat=True))
            for raw in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
                if raw.isdigit() and int(raw) not in visible:
                    with contextlib.suppress(Http404):
                        approval.notice_get_for_decision(
                            actor=request.user,
                            pk=int(raw),
                            operation=NoticeOperation(action.split("_")[0]),
                        )
        return super().changelist_view(request, extra_context)

    @admin.action(description=_("Approve selected notices"))
    def approve_selected(
        self, request: HttpRequest, queryset: QuerySet[Notice]
    ) -> HttpResponse | None:
        notices = list(queryset.select_related("department"))
        if "apply" not in request.POST:
            return TemplateResponse(
                request,
                "notices/admin/approve_confirm.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Approve notices",
                    "rows": [(n, approval.required_approvals(n)) for n in notices],
                    "opts": self.model._meta,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        for notice in notices:
            try:
                approval.notice_approve(
                    actor=request.user,
                    notice=notice,
                    version_hash=request.POST.get(f"version_hash_{notice.pk}", ""),
                    totp_token=request.POST.get("totp_token") or None,
                    reach_acknowledged=bool(request.POST.get("reach_acknowledged")),
                )
            except (PermissionDenied, ApplicationError) as exc:
                self.message_user(
                    request, f"#{notice.pk}: {getattr(exc, 'message', None) or exc}", messages.ERROR
                )
            else:
                self.message_user(
                    request, _("#%(pk)s: approval recorded.") % {"pk": notice.pk}, messages.SUCCESS
                )
        return None

    @admin.action(description=_("Reject selected notices"))
    def reject_selected(
        self, request: HttpRequest, queryset: QuerySet[Notice]
    ) -> HttpResponse | None:
        notices = list(queryset.select_related("department"))
        if "apply" not in request.POST:
            return TemplateResponse(
                request,
                "notices/admin/reject_confirm.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Reject notices",
                    "notices": notices,
                    "opts": self.model._meta,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        for notice in notices:
            try:
                services.notice_reject(
                    actor=request.user, notice=notice, reason=request.POST.get("reason", "")
                )
            except (PermissionDenied, ApplicationError) as exc:
                self.message_user(
                    request, f"#{notice.pk}: {getattr(exc, 'message', None) or exc}", messages.ERROR
                )
            else:
                self.message_user(
                    request, _("#%(pk)s: rejected.") % {"pk": notice.pk}, messages.SUCCESS
                )
        return None


@admin.register(Approval)
class ApprovalAdmin(_ReadOnly):
    list_display = ["notice", "version", "approver", "approved_at", "voided_at"]
    list_select_related = ["notice", "approver"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Approval]:
        return Approval.objects.filter(notice__in=selectors.notice_list_for_user(user=request.user))


@admin.register(Rejection)
class RejectionAdmin(_ReadOnly):
    list_display = ["notice", "version", "by", "reason", "at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Rejection]:
        return Rejection.objects.filter(
            notice__in=selectors.notice_list_for_user(user=request.user)
        )


@admin.register(NoticeContribution)
class NoticeContributionAdmin(_ReadOnly):
    list_display = ["notice", "version", "user", "kind", "at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[NoticeContribution]:
        return NoticeContribution.objects.filter(
            notice__in=selectors.notice_list_for_user(user=request.user)
        )


@admin.register(NoticeTemplate)
class NoticeTemplateAdmin(_ReadOnly):
    list_display = ["name", "code", "trigger_code", "tier", "kind", "is_active"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[NoticeTemplate]:
        return NoticeTemplate.objects.filter(
            department__in=selectors.notice_departments_for_user(user=request.user)
        )
