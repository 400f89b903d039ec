"""The auditors' pages: the filtered trail, one event, exports and their progress.

Anyone without VIEW_AUDIT in some department gets 404 for all of them, and exports need
EXPORT_AUDIT: not admitting that the trail exists is the same answer as "no such page".
"""

from __future__ import annotations

import json
import uuid

from django.http import FileResponse, Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts import permissions as perms
from audit import chain_runs, proofs, reports, selectors
from audit.exports import export_start
from audit.forms import EventFilterForm, ExportForm, ReceiptOpenForm
from audit.models import ExportStatus
from audit.selectors import EventFilters
from common.errors import ApplicationError
from common.types import AuthenticatedRequest

PAGE_SIZE = 50
# The per-notice receipt report, which delivery serves (delivery/receipt_views.py) under
# /audit/: audit links to it by URL name only, and imports nothing of delivery.
RECEIPT_REPORT_URL = "receipts:report"


def _int_param(request: AuthenticatedRequest, name: str) -> int | None:
    raw = request.GET.get(name, "")
    return int(raw) if raw.isdigit() else None


def _list_context(request: AuthenticatedRequest, form: EventFilterForm) -> dict[str, object]:
    departments = list(selectors.audit_departments_for_user(user=request.user))
    if not departments:
        raise Http404("No audit trail here.")
    can_export = perms.departments_with_perm(request.user, perms.EXPORT_AUDIT).exists()
    page = None
    if form.is_valid():
        queryset = selectors.events_filter(
            selectors.event_list_for_user(user=request.user), form.filters()
        )
        page = selectors.events_page(
            queryset.select_related("department"),
            before=_int_param(request, "before"),
            after=_int_param(request, "after"),
            size=PAGE_SIZE,
        )
    query = request.GET.copy()
    for key in ("before", "after"):
        query.pop(key, None)
    return {
        "form": form,
        "page": page,
        "can_export": can_export,
        "query": query.urlencode(),
        "filter_values": form.filters().as_dict() if form.is_valid() else {},
        "receipt_form": ReceiptOpenForm(),
    }


@require_GET
def event_list(request: AuthenticatedRequest) -> HttpResponse:
    departments = selectors.audit_departments_for_user(user=request.user)
    # An unfiltered first visit is a valid, empty filter: bind it so the newest events show.
    form = EventFilterForm(request.GET, departments=departments)
    context = _list_context(request, form)
    return render(request, "audit/event_list.html", context, status=200 if form.is_valid() else 400)


@require_GET
def event_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    event = selectors.event_get_for_user(user=request.user, pk=pk)
    data_json = json.dumps(event.data, indent=2, ensure_ascii=False, sort_keys=True)
    receipts_url = None
    if event.target_type == "notices.Notice" and event.target_id.isdigit():
        receipts_url = reverse(RECEIPT_REPORT_URL, args=[int(event.target_id)])
    return render(
        request,
        "audit/event_detail.html",
        {"event": event, "data_json": data_json, "receipts_url": receipts_url},
    )


@require_POST
def export(request: AuthenticatedRequest) -> HttpResponseBase:
    departments = selectors.audit_departments_for_user(user=request.user, perm=perms.EXPORT_AUDIT)
    if not departments.exists():
        raise Http404("No audit trail here.")
    form = ExportForm(request.POST, departments=departments)
    if not form.is_valid():
        context = _list_context(request, EventFilterForm(request.POST, departments=departments))
        context["form"] = form
        return render(request, "audit/event_list.html", context, status=400)
    try:
        started = export_start(
            actor=request.user, filters=form.filters(), fmt=form.cleaned_data["format"]
        )
    except ApplicationError as exc:
        form.add_error(None, exc.message)
        context = _list_context(request, EventFilterForm(request.POST, departments=departments))
        context["form"] = form
        return render(request, "audit/event_list.html", context, status=400)
    if started.background is not None:
        return redirect("audit:export-detail", export_id=started.background.pk)
    response = StreamingHttpResponse(started.chunks or (), content_type=started.content_type)
    response["Content-Disposition"] = f'attachment; filename="{started.file_name}"'
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def export_detail(request: AuthenticatedRequest, export_id: uuid.UUID) -> HttpResponse:
    job = selectors.export_get_for_user(user=request.user, export_id=str(export_id))
    is_report = reports.is_report(job.filters)
    shown = job.filters if is_report else EventFilters.from_dict(job.filters).as_dict()
    return render(request, "audit/export_detail.html", {"export": job, "filters": shown})


@require_GET
def export_progress(request: AuthenticatedRequest, export_id: uuid.UUID) -> JsonResponse:
    job = selectors.export_get_for_user(user=request.user, export_id=str(export_id))
    total = job.total_rows
    done = job.status == ExportStatus.DONE
    percent = 100 if done else (int(job.rows_written * 100 / total) if total else 0)
    return JsonResponse(
        {
            "status": job.status,
            "status_label": job.get_status_display(),
            "rows_written": job.rows_written,
            "total_rows": total,
            "percent": percent,
            "download_url": reverse("audit:export-download", args=[job.pk]) if done else None,
            "error": _("The export failed. Try again or ask the system administrator.")
            if job.status == ExportStatus.FAILED
            else "",
        },
        headers={"Cache-Control": "no-store"},
    )


@require_GET
def export_download(request: AuthenticatedRequest, export_id: uuid.UUID) -> FileResponse:
    job = selectors.export_get_for_user(user=request.user, export_id=str(export_id))
    if job.status != ExportStatus.DONE or not job.file:
        raise Http404("The export is not ready.")
    name = job.file.name.rsplit("/", 1)[-1]
    response = FileResponse(job.file.open("rb"), as_attachment=True, filename=name)
    response["Cache-Control"] = "no-store"
    return response


# --- the way into the per-notice receipt report ----------------------------------------------


@require_GET
def receipts_open(request: AuthenticatedRequest) -> HttpResponse:
    """The audit page's "Receipt report" field: on to the notice's report (404s are the report's)."""
    if not selectors.audit_departments_for_user(user=request.user).exists():
        raise Http404("No audit trail here.")
    form = ReceiptOpenForm(request.GET)
    if not form.is_valid():
        context = _list_context(
            request,
            EventFilterForm(
                {}, departments=selectors.audit_departments_for_user(user=request.user)
            ),
        )
        context["receipt_form"] = form
        return render(request, "audit/event_list.html", context, status=400)
    return redirect(RECEIPT_REPORT_URL, notice_id=form.cleaned_data["notice"])


# --- the Chain page: head, anchor, last verification, and a verification in the background ---


@require_GET
def chain_page(request: AuthenticatedRequest) -> HttpResponse:
    state = chain_runs.chain_state(user=request.user)
    try:
        watched: uuid.UUID | None = uuid.UUID(request.GET.get("run", ""))
    except ValueError:
        watched = state.running.pk if state.running is not None else None
    return render(request, "audit/chain.html", {"state": state, "watched": watched})


@require_POST
def chain_verify_start(request: AuthenticatedRequest) -> HttpResponse:
    run = chain_runs.verification_start(actor=request.user)
    return redirect(reverse("audit:chain") + f"?run={run.pk}#verification")


@require_GET
def chain_progress(request: AuthenticatedRequest, run_id: uuid.UUID) -> JsonResponse:
    run = chain_runs.verification_get(user=request.user, verification_id=str(run_id))
    done = run.status == ExportStatus.DONE
    if done and run.ok:
        outcome = _("The chain verified: %(count)s events, head #%(head)s.") % {
            "count": run.checked,
            "head": run.head_sequence,
        }
    elif done:
        outcome = _("The chain did NOT verify: %(reason)s") % {"reason": run.reason}
    else:
        outcome = ""
    return JsonResponse(
        {
            "status": run.status,
            "status_label": run.get_status_display(),
            "checked": run.checked,
            "total": run.total,
            "percent": chain_runs.verification_percent(run),
            "ok": run.ok,
            "outcome": outcome,
        },
        headers={"Cache-Control": "no-store"},
    )


@require_GET
def export_proof(request: AuthenticatedRequest) -> HttpResponseBase:
    """The chain proof of the export these filters give (audit.proofs), as JSON Lines."""
    departments = selectors.audit_departments_for_user(user=request.user, perm=perms.EXPORT_AUDIT)
    if not departments.exists():
        raise Http404("No audit trail here.")
    form = EventFilterForm(request.GET, departments=departments)
    if not form.is_valid():
        context = _list_context(request, form)
        return render(request, "audit/event_list.html", context, status=400)
    lines = proofs.proof_lines(actor=request.user, filters=form.filters())
    response = StreamingHttpResponse(
        (line.encode() for line in lines), content_type="application/x-ndjson"
    )
    response["Content-Disposition"] = 'attachment; filename="audit-chain-proof.jsonl"'
    response["Cache-Control"] = "no-store"
    return response
