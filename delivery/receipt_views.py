"""The per-notice receipt report's pages: the report, and its export.

Served under /audit/notices/<id>/receipts/ (delivery/receipt_urls.py, included by
config/urls.py), where auditors find it; anyone who may not read the notice's trail gets 404.
"""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts import permissions as perms
from common.types import AuthenticatedRequest
from delivery import receipt_report
from delivery.channels import channel_figures
from delivery.receipt_forms import ReceiptExportForm, ReceiptFilterForm

RECEIPT_PAGE_SIZE = 100


def _int_param(request: AuthenticatedRequest, name: str) -> int | None:
    raw = request.GET.get(name, "")
    return int(raw) if raw.isdigit() else None


def _receipts_context(
    request: AuthenticatedRequest, notice_id: int, form: ReceiptFilterForm
) -> dict[str, object]:
    notice = receipt_report.notice_get_for_auditor(user=request.user, notice_id=notice_id)
    contacts = receipt_report.may_see_contacts(request.user, notice)
    page = None
    if form.is_valid():
        page = receipt_report.receipts_page(
            receipt_report.receipts_filter(notice, form.filters()),
            contacts=contacts,
            after=_int_param(request, "after"),
            size=RECEIPT_PAGE_SIZE,
        )
    query = request.GET.copy()
    query.pop("after", None)
    return {
        "notice": notice,
        "plan": receipt_report.notice_plan(notice),
        "channels": channel_figures(receipt_report.notice_plan(notice)),
        "form": form,
        "page": page,
        "counts": receipt_report.state_counts(notice),
        "confirmed": receipt_report.confirmed_count(notice),
        "contacts": contacts,
        "can_export": perms.has_department_perm(
            request.user, perms.EXPORT_AUDIT, notice.department
        ),
        "query": query.urlencode(),
        "filter_values": form.filters().as_dict() if form.is_valid() else {},
        "headers": receipt_report.HEADERS,
    }


@require_GET
def receipt_report_page(request: AuthenticatedRequest, notice_id: int) -> HttpResponse:
    form = ReceiptFilterForm(request.GET)
    context = _receipts_context(request, notice_id, form)
    return render(
        request, "delivery/receipts.html", context, status=200 if form.is_valid() else 400
    )


@require_POST
def receipt_export(request: AuthenticatedRequest, notice_id: int) -> HttpResponseBase:
    notice = receipt_report.notice_get_for_auditor(
        user=request.user, notice_id=notice_id, perm=perms.EXPORT_AUDIT
    )
    form = ReceiptExportForm(request.POST)
    if not form.is_valid():
        context = _receipts_context(request, notice.pk, ReceiptFilterForm(request.POST))
        context["form"] = form
        return render(request, "delivery/receipts.html", context, status=400)
    started = receipt_report.receipts_export_start(
        actor=request.user,
        notice_id=notice.pk,
        filters=form.filters(),
        fmt=form.cleaned_data["format"],
    )
    if started.background is not None:
        return redirect("audit:export-detail", export_id=started.background.pk)
    response = StreamingHttpResponse(started.chunks or (), content_type=started.content_type)
    response["Content-Disposition"] = f'attachment; filename="{started.file_name}"'
    response["Cache-Control"] = "no-store"
    return response
