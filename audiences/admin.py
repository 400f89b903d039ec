"""Back office for recipients and a department's audience settings. Writes go through services."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from import_export.admin import ImportExportMixin
from import_export.forms import ConfirmImportForm, ImportForm
from import_export.tmp_storages import MediaStorage

from accounts import permissions as perms
from accounts.models import Department
from audiences import selectors, services
from audiences.audit_actions import AudienceAuditAction
from audiences.import_guide import import_guide_context
from audiences.import_jobs import import_job_start
from audiences.importing import upload_check
from audiences.models import (
    DirectorySettings,
    DistrictMapping,
    Recipient,
    Tag,
    Venue,
)
from audiences.resources import RecipientCSV, RecipientResource, RecipientXLSX
from audiences.validation import ImportFileError
from audit.services import audit_record
from common.errors import ApplicationError


class CappedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Counts at most CAP+1 rows: a million-row changelist must not COUNT(*) the table on every page."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        # Without the page's ORDER BY, so PostgreSQL can count from the (department, user id) index.
        return int(self.object_list.order_by()[: self.CAP + 1].count())  # type: ignore[attr-defined]


class SharedMediaStorage(MediaStorage):  # type: ignore[misc]
    """Keeps the file between preview and confirm in the project's default storage (shared by all web nodes)."""

    def _configure_storage(self) -> None:
        self._storage = default_storage


class DepartmentImportForm(ImportForm):  # type: ignore[misc]
    department = forms.ModelChoiceField(
        queryset=Department.objects.none(), label=gettext_lazy("Department")
    )
    field_order = ["department", "resource", "import_file", "format"]


class DepartmentConfirmImportForm(ConfirmImportForm):  # type: ignore[misc]
    department = forms.ModelChoiceField(
        queryset=Department.objects.none(), widget=forms.HiddenInput
    )


def _managed_departments(request: HttpRequest) -> QuerySet[Department]:
    return perms.departments_with_perm(request.user, perms.MANAGE_AUDIENCE).order_by("code")


@admin.register(Recipient)
class RecipientAdmin(ImportExportMixin, admin.ModelAdmin[Recipient]):  # type: ignore[misc]
    resource_classes = [RecipientResource]
    # audiences.reader reads every upload, as on the bulk and background paths.
    import_formats = [RecipientCSV, RecipientXLSX]
    import_template_name = "admin/audiences/recipient/import.html"
    import_form_class = DepartmentImportForm
    confirm_form_class = DepartmentConfirmImportForm
    tmp_storage_class = SharedMediaStorage
    list_display = [
        "dingtalk_user_id",
        "name",
        "mobile_display",
        "language",
        "district",
        "function_tag",
        "risk_level",
        "subscription_state",
        "department_code",
    ]
    list_filter = ["district", "risk_level", "subscription_state", "language"]
    list_select_related = ["district", "department"]
    search_fields = ["=dingtalk_user_id"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    ordering = ["-id"]
    actions = ["erase_selected"]
    fields = [
        "dingtalk_user_id",
        "name",
        "mobile",
        "language",
        "district",
        "function_tag",
        "risk_level",
        "subscription_state",
        "subscription_source",
        "subscription_changed_at",
        "erased_at",
    ]
    readonly_fields = [
        "dingtalk_user_id",
        "subscription_source",
        "subscription_changed_at",
        "erased_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Recipient]:
        return selectors.recipient_list_for_user(user=request.user).select_related(
            "district", "department"
        )

    def _contact_departments(self, request: HttpRequest) -> set[int]:
        cached: set[int] | None = getattr(request, "_audience_contact_departments", None)
        if cached is None:
            cached = selectors.contact_departments_for_user(user=request.user)
            request._audience_contact_departments = cached  # type: ignore[attr-defined]
        return cached

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self._request = request
        return super().changelist_view(request, extra_context)

    @admin.display(description=gettext_lazy("mobile"))
    def mobile_display(self, obj: Recipient) -> str:
        request = getattr(self, "_request", None)
        if request is not None and obj.department_id in self._contact_departments(request):
            return obj.mobile
        return obj.masked_mobile

    @admin.display(description=gettext_lazy("department"), ordering="department__code")
    def department_code(self, obj: Recipient) -> str:
        return obj.department.code

    def get_fields(self, request: HttpRequest, obj: Recipient | None = None) -> Any:
        names = list(self.fields)
        if obj is not None and obj.department_id not in self._contact_departments(request):
            names[names.index("mobile")] = "mobile_display"
        return names

    def get_readonly_fields(self, request: HttpRequest, obj: Recipient | None = None) -> Any:
        if obj is not None and not self.has_change_permission(request, obj):
            return [*self.get_fields(request, obj)]
        return [*self.readonly_fields, "mobile_display"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # recipients arrive by import, directory sync or directory events

    def has_delete_permission(self, request: HttpRequest, obj: Recipient | None = None) -> bool:
        return False  # erasure keeps the anonymous row; see erase_selected

    def has_change_permission(self, request: HttpRequest, obj: Recipient | None = None) -> bool:
        if obj is None:
            return super().has_change_permission(request)
        return perms.has_department_perm(request.user, perms.MANAGE_AUDIENCE, obj.department)

    def save_model(self, request: HttpRequest, obj: Recipient, form: Any, change: bool) -> None:
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            services.recipient_update(actor=request.user, recipient=obj, changes=changes)
        except ApplicationError as exc:
            raise PermissionDenied(exc.message) from None

    @admin.action(description=gettext_lazy("Erase personal data (privacy request)"))
    def erase_selected(self, request: HttpRequest, queryset: QuerySet[Recipient]) -> None:
        done = 0
        for recipient in (
            queryset.filter(erased_at__isnull=True).select_related("department").order_by("pk")
        ):
            try:
                services.recipient_erase(
                    actor=request.user,
                    recipient=recipient,
                    reason="admin action",
                )
            except PermissionDenied:
                self.message_user(
                    request, _("Not allowed for %(id)s.") % {"id": recipient.pk}, messages.ERROR
                )
            else:
                done += 1
        self.message_user(request, _("Erased: %(n)s.") % {"n": done}, messages.SUCCESS)

    # --- import-export ----------------------------------------------------------------------

    def has_import_permission(self, request: HttpRequest) -> bool:
        return _managed_departments(request).exists()

    def has_export_permission(self, request: HttpRequest) -> bool:
        return bool(self._contact_departments(request))

    def create_import_form(self, request: HttpRequest) -> Any:
        form = super().create_import_form(request)
        form.fields["department"].queryset = _managed_departments(request)
        return form

    def create_confirm_form(self, request: HttpRequest, import_form: Any = None) -> Any:
        form = super().create_confirm_form(request, import_form)
        form.fields["department"].queryset = _managed_departments(request)
        return form

    def get_confirm_form_initial(self, request: HttpRequest, import_form: Any) -> dict[str, Any]:
        initial: dict[str, Any] = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            initial["department"] = import_form.cleaned_data["department"].pk
        return initial

    def get_import_resource_kwargs(self, request: HttpRequest, **kwargs: Any) -> dict[str, Any]:
        form = kwargs.get("form")
        department = None
        if form is not None and hasattr(form, "cleaned_data"):
            department = form.cleaned_data.get("department")
        return {"department": department, "user": request.user, "full_contact": True}

    def get_import_data_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super().get_import_data_kwargs(**kwargs)
        # All or nothing: the confirm step rolls everything back if any row fails its re-check.
        data["rollback_on_validation_errors"] = True
        return data

    def get_import_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_import_context_data(**kwargs)
        context.update(import_guide_context())
        return context

    def import_action(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if request.method == "POST" and self.has_import_permission(request):
            diverted = self._check_upload(request)
            if diverted is not None:
                return diverted
        response: HttpResponse = super().import_action(request, **kwargs)
        return response

    def add_data_read_fail_error_to_form(self, form: Any, e: Exception) -> None:
        if isinstance(e, ImportFileError):
            form.add_error("import_file", e.message)
        else:
            super().add_data_read_fail_error_to_form(form, e)

    def _check_upload(self, request: HttpRequest) -> HttpResponse | None:
        """Refuse a bad file before import-export sees it; a large one becomes a background job.

        The request reads at most AUDIENCES_ADMIN_SYNC_MAX_ROWS rows, in any format and with any
        line endings; a refusal is audited and shown as a message on the import page.
        """
        form = self.create_import_form(request)
        if not form.is_valid():
            return None
        upload, department = form.cleaned_data["import_file"], form.cleaned_data["department"]
        if upload.size > settings.AUDIENCES_IMPORT_MAX_BYTES:
            data = upload.read(settings.AUDIENCES_IMPORT_MAX_BYTES + 1)
        else:
            data = upload.read()
        upload.seek(0)
        checked = upload_check(
            actor=request.user,
            department=department,
            data=data,
            file_name=upload.name,
            size=upload.size,
        )
        if checked.error:
            self.message_user(request, checked.error, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        if not checked.large:
            return None
        job = import_job_start(
            actor=request.user,
            department=department,
            data=data,
            file_name=upload.name,
            file_format=checked.file_format,
        )
        return HttpResponseRedirect(reverse("audiences:import-job", args=[department.code, job.pk]))

    def get_export_queryset(self, request: HttpRequest) -> QuerySet[Recipient]:
        queryset: QuerySet[Recipient] = super().get_export_queryset(request)
        return queryset.filter(
            department_id__in=self._contact_departments(request)
        ).prefetch_related("tags")

    def get_export_resource_kwargs(self, request: HttpRequest, **kwargs: Any) -> dict[str, Any]:
        return {"user": request.user, "full_contact": True}

    def get_export_data(
        self, file_format: Any, request: HttpRequest, queryset: QuerySet[Recipient], **kwargs: Any
    ) -> Any:
        data = super().get_export_data(file_format, request, queryset, **kwargs)
        for department in Department.objects.filter(
            pk__in=queryset.values("department_id").distinct()
        ):
            audit_record(
                actor=request.user,
                action=AudienceAuditAction.EXPORTED,
                department=department,
                data={
                    "rows": queryset.filter(department=department).count(),
                    "format": str(file_format),
                },
            )
        return data


class DepartmentOwnedAdmin(admin.ModelAdmin[Model]):
    """Tags, venues, district mappings, directory settings: scoped to departments the user manages."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Model]:
        visible = perms.departments_with_perm(request.user, perms.VIEW_AUDIENCE)
        return super().get_queryset(request).filter(department__in=visible)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "department":
            kwargs["queryset"] = _managed_departments(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _manages(self, request: HttpRequest, obj: Model | None) -> bool:
        if obj is None:
            return _managed_departments(request).exists()
        return perms.has_department_perm(request.user, perms.MANAGE_AUDIENCE, obj.department)  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and self._manages(request, None)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_change_permission(request, obj) and self._manages(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self._manages(request, obj)

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        services.owned_save(actor=request.user, obj=obj, changed=form.changed_data)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        services.owned_delete(actor=request.user, obj=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Model]) -> None:
        for obj in queryset.order_by("pk"):
            services.owned_delete(actor=request.user, obj=obj)


@admin.register(Tag)
class TagAdmin(DepartmentOwnedAdmin):
    list_display = ["name", "description", "high_risk", "department"]
    list_select_related = ["department"]
    list_filter = ["high_risk"]
    fields = ["department", "name", "description", "high_risk"]


@admin.register(Venue)
class VenueAdmin(DepartmentOwnedAdmin):
    list_display = ["code", "name", "district", "latitude", "longitude", "department"]
    list_select_related = ["department", "district"]
    search_fields = ["code", "name"]
    fields = ["department", "code", "name", "district", "latitude", "longitude"]


@admin.register(DistrictMapping)
class DistrictMappingAdmin(DepartmentOwnedAdmin):
    list_display = ["dingtalk_dept_id", "district", "department"]
    list_select_related = ["department", "district"]
    fields = ["department", "dingtalk_dept_id", "district"]


@admin.register(DirectorySettings)
class DirectorySettingsAdmin(DepartmentOwnedAdmin):
    list_display = ["department", "root_dept_id", "last_synced_at"]
    list_select_related = ["department"]
    fields = [
        "department",
        "root_dept_id",
        "callback_token_ref",
        "callback_aes_key_ref",
        "last_synced_at",
    ]
    readonly_fields = ["last_synced_at"]
