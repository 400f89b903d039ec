"""Audience pages: overview, segment editor with live count, venue/check-in uploads, import jobs."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from accounts import permissions as perms
from accounts.models import Department
from accounts.selectors import department_get_for_user
from audiences import enqueue, selectors, services
from audiences.followers import FollowEvent, event_time, follow_event_apply
from audiences.forms import CsvUploadForm, SegmentCountForm, SegmentForm, segment_initial
from audiences.import_jobs import import_job_confirm
from audiences.models import ImportState
from audiences.sync import DirectoryEvent, callback_crypto_for, directory_sync_request
from audiences.venues import checkins_import_csv, venues_import_csv
from common.errors import ApplicationError
from common.types import AuthenticatedRequest
from common.views import public_view
from dingtalk.errors import CallbackCryptoError


def home(request: AuthenticatedRequest, code: str) -> HttpResponse:
    department = department_get_for_user(user=request.user, code=code, perm=perms.VIEW_AUDIENCE)
    segments = [
        (s, selectors.segment_count(s))
        for s in selectors.segment_list_for_user(user=request.user, department=department)
    ]
    can_manage = perms.has_department_perm(request.user, perms.MANAGE_AUDIENCE, department)
    return render(
        request,
        "audiences/home.html",
        {"department": department, "segments": segments, "can_manage": can_manage},
    )


def _segment_editor(request: AuthenticatedRequest, code: str, pk: int | None) -> HttpResponse:
    department = department_get_for_user(user=request.user, code=code, perm=perms.VIEW_AUDIENCE)
    segment = (
        selectors.segment_get_for_user(user=request.user, department=department, pk=pk)
        if pk
        else None
    )
    can_manage = perms.has_department_perm(request.user, perms.MANAGE_AUDIENCE, department)
    if request.method == "POST" and not can_manage:
        raise PermissionDenied
    initial = segment_initial(segment) if segment is not None else None
    form = SegmentForm(request.POST or None, initial=initial, department=department)
    if request.method == "POST" and form.is_valid():
        try:
            if segment is None:
                segment = services.segment_create(
                    actor=request.user, department=department, data=form.to_input()
                )
            else:
                segment = services.segment_update(
                    actor=request.user, segment=segment, data=form.to_input()
                )
        except ApplicationError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, _("Segment saved."))
            return redirect("audiences:segment-edit", code=department.code, pk=segment.pk)
    count = selectors.segment_count(segment) if segment is not None else None
    return render(
        request,
        "audiences/segment_form.html",
        {
            "department": department,
            "segment": segment,
            "form": form,
            "count": count,
            "can_manage": can_manage,
        },
    )


@require_http_methods(["GET", "POST"])
def segment_create(request: AuthenticatedRequest, code: str) -> HttpResponse:
    return _segment_editor(request, code, None)


@require_http_methods(["GET", "POST"])
def segment_edit(request: AuthenticatedRequest, code: str, pk: int) -> HttpResponse:
    return _segment_editor(request, code, pk)


@require_POST
def segment_delete(request: AuthenticatedRequest, code: str, pk: int) -> HttpResponse:
    department = department_get_for_user(user=request.user, code=code, perm=perms.MANAGE_AUDIENCE)
    segment = selectors.segment_get_for_user(user=request.user, department=department, pk=pk)
    services.segment_delete(actor=request.user, segment=segment)
    messages.success(request, _("Segment deleted."))
    return redirect("audiences:home", code=department.code)


@require_POST
def segment_count(request: AuthenticatedRequest, code: str) -> JsonResponse:
    """Live count for the editor: how many recipients the (unsaved) rule matches now."""
    department = department_get_for_user(user=request.user, code=code, perm=perms.VIEW_AUDIENCE)
    form = SegmentCountForm(request.POST, department=department)
    if not form.is_valid():
        return JsonResponse({"count": None, "errors": form.errors.get_json_data()}, status=400)
    return JsonResponse({"count": selectors.rule_count(form.to_rule())})


@require_http_methods(["GET", "POST"])
def venues(request: AuthenticatedRequest, code: str) -> HttpResponse:
    department = department_get_for_user(user=request.user, code=code, perm=perms.VIEW_AUDIENCE)
    can_manage = perms.has_department_perm(request.user, perms.MANAGE_AUDIENCE, department)
    form = CsvUploadForm(request.POST or None, request.FILES or None)
    result = None
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied
        if form.is_valid():
            upload = form.cleaned_data["file"]
            importer = (
                checkins_import_csv if request.POST.get("kind") == "checkins" else venues_import_csv
            )
            result = importer(
                actor=request.user, department=department, data=upload.read(), file_name=upload.name
            )
            if result.ok:
                messages.success(
                    request,
                    _("Imported: %(created)s new, %(updated)s updated, %(unchanged)s unchanged.")
                    % {
                        "created": result.created,
                        "updated": result.updated,
                        "unchanged": result.unchanged,
                    },
                )
                return redirect("audiences:venues", code=department.code)
    return render(
        request,
        "audiences/venues.html",
        {
            "department": department,
            "venues": selectors.venue_list_for_user(user=request.user, department=department)[:500],
            "form": form,
            "result": result,
            "can_manage": can_manage,
        },
    )


@require_http_methods(["GET", "POST"])
def import_job(request: AuthenticatedRequest, code: str, pk: int) -> HttpResponse:
    department = department_get_for_user(user=request.user, code=code, perm=perms.MANAGE_AUDIENCE)
    job = selectors.import_job_get_for_user(user=request.user, department=department, pk=pk)
    if request.method == "POST":
        try:
            job = import_job_confirm(actor=request.user, job=job)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        return redirect("audiences:import-job", code=department.code, pk=job.pk)
    return render(
        request,
        "audiences/import_job.html",
        {"department": department, "job": job, "States": ImportState, "errors": job.errors[:200]},
    )


def import_job_progress(request: AuthenticatedRequest, code: str, pk: int) -> JsonResponse:
    department = department_get_for_user(user=request.user, code=code, perm=perms.MANAGE_AUDIENCE)
    job = selectors.import_job_get_for_user(user=request.user, department=department, pk=pk)
    return JsonResponse(
        {
            "state": job.state,
            "state_label": job.get_state_display(),
            "percent": job.percent,
            "processed": job.processed_rows,
            "total": job.total_rows,
            "finished": job.state
            in (ImportState.VALIDATED, ImportState.REJECTED, ImportState.DONE, ImportState.FAILED),
        }
    )


@require_POST
def sync_request(request: AuthenticatedRequest, code: str) -> HttpResponse:
    department = department_get_for_user(user=request.user, code=code, perm=perms.MANAGE_AUDIENCE)
    directory_sync_request(actor=request.user, department=department)
    messages.success(request, _("Directory sync started."))
    return redirect("audiences:home", code=department.code)


@public_view
@csrf_exempt
@require_POST
def dingtalk_callback(request: HttpRequest, code: str) -> HttpResponse:
    """DingTalk's encrypted event push. Authenticated by its signature (not a session), hence public.

    Answers check_url and directory events with the encrypted "success"; anything that fails the
    signature or decryption gets 403 and changes nothing.
    """
    crypto = callback_crypto_for(code)
    if crypto is None:
        return JsonResponse({"error": "unknown callback"}, status=404)
    try:
        event = crypto.decrypt_request(
            request.GET.get("msg_signature", ""),
            request.GET.get("timestamp", ""),
            request.GET.get("nonce", ""),
            request.body,
        )
    except CallbackCryptoError:
        return JsonResponse({"error": "bad signature"}, status=403)
    event_type = str(event.get("EventType", ""))
    if event_type in set(FollowEvent):
        raw = event.get("UserId") or []
        department_id = Department.objects.filter(code=code).values_list("pk", flat=True).get()
        follow_event_apply(
            department_id=department_id,
            event_type=event_type,
            userids=[str(u) for u in (raw if isinstance(raw, list) else [raw])][:100],
            at=event_time(event.get("TimeStamp")),
        )
    elif event_type in set(DirectoryEvent):
        userids = [str(u) for u in event.get("UserId") or []][:100]
        department_id = Department.objects.filter(code=code).values_list("pk", flat=True).get()
        # Handled by a task: DingTalk wants the reply within 2.5 s, and fetching users is network I/O.
        enqueue.directory_event_apply(department_id, event_type, userids)
    return JsonResponse(crypto.encrypt_reply())
