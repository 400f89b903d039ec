"""Delivery pages: the live dashboard per notice (+ its JSON), the department summary, the
outreach list, recall and resume, and the public confirmation and notice pages.
"""

from __future__ import annotations

import csv

from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_POST

from accounts import permissions as perms
from common.errors import ApplicationError
from common.types import AuthenticatedRequest
from common.views import public_view
from delivery import selectors
from delivery.channels import channel_figures
from delivery.forms import ConfirmForm, OutreachCloseForm, RecallForm
from delivery.models import Delivery, PlanStatus
from delivery.services import followup, lifecycle


@require_GET
def summary(request: AuthenticatedRequest) -> HttpResponse:
    departments = selectors.department_summaries(user=request.user)
    if not departments:
        raise Http404("No deliveries here.")
    return render(request, "delivery/summary.html", {"departments": departments})


@require_GET
def dashboard(request: AuthenticatedRequest, notice_id: int) -> HttpResponse:
    plan = selectors.plan_get_for_user(user=request.user, notice_id=notice_id)
    return render(
        request,
        "delivery/dashboard.html",
        {
            "plan": plan,
            "notice": plan.notice,
            "figures": selectors.plan_figures(plan),
            "channels": channel_figures(plan),
            "can_recall": selectors.can_recall(user=request.user, plan=plan),
            "can_resume": plan.status == "paused"
            and perms.has_department_perm(request.user, perms.APPROVE_NOTICE, plan.department),
            "can_settle_held": perms.has_department_perm(
                request.user, perms.APPROVE_NOTICE, plan.department
            ),
            "recall_form": RecallForm(),
            "chart_w": selectors.CHART_W,
            "chart_h": selectors.CHART_H,
        },
    )


@require_GET
def dashboard_json(request: AuthenticatedRequest, notice_id: int) -> JsonResponse:
    plan = selectors.plan_get_for_user(user=request.user, notice_id=notice_id)
    return JsonResponse(selectors.dashboard_figures(plan))


@require_POST
def recall(request: AuthenticatedRequest, notice_id: int) -> HttpResponse:
    plan = selectors.plan_get_for_user(user=request.user, notice_id=notice_id)
    form = RecallForm(request.POST)
    if not form.is_valid():
        flash.error(request, _("Give a reason for the recall."))
        return redirect("delivery:dashboard", notice_id=notice_id)
    try:
        followup.notice_recall(
            actor=request.user, notice=plan.notice, reason=form.cleaned_data["reason"]
        )
    except PermissionDenied:
        raise Http404("No such delivery.") from None
    except ApplicationError as exc:
        flash.error(request, exc.message)
    else:
        flash.success(request, _("The notice is being recalled from every phone."))
    return redirect("delivery:dashboard", notice_id=notice_id)


@require_POST
def resume(request: AuthenticatedRequest, notice_id: int) -> HttpResponse:
    plan = selectors.plan_get_for_user(user=request.user, notice_id=notice_id)
    try:
        lifecycle.plan_resume(actor=request.user, plan_id=plan.pk)
    except PermissionDenied:
        raise Http404("No such delivery.") from None
    except ApplicationError as exc:
        flash.error(request, _(exc.message))
    else:
        flash.success(request, _("Sending resumed."))
    return redirect("delivery:dashboard", notice_id=notice_id)


@require_GET
def outreach(request: AuthenticatedRequest, notice_id: int) -> HttpResponse:
    plan = selectors.plan_get_for_user(user=request.user, notice_id=notice_id)
    people = followup.outreach_list(plan=plan)[:500]
    return render(
        request,
        "delivery/outreach.html",
        {"plan": plan, "notice": plan.notice, "people": people, "form": OutreachCloseForm()},
    )


@require_GET
def outreach_export(request: AuthenticatedRequest, notice_id: int) -> HttpResponse:
    plan = selectors.plan_get_for_user(user=request.user, notice_id=notice_id)
    rows = followup.outreach_rows(actor=request.user, plan=plan)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="outreach-{notice_id}.csv"'
    writer = csv.writer(response)
    writer.writerows(rows)
    return response


def _outreach_case(request: AuthenticatedRequest, notice_id: int, delivery_id: int) -> Delivery:
    plan = selectors.plan_get_for_user(user=request.user, notice_id=notice_id)
    case = Delivery.objects.filter(plan=plan, pk=delivery_id).select_related("plan").first()
    if case is None:
        raise Http404("No such case.")
    return case


@require_POST
def outreach_assign(
    request: AuthenticatedRequest, notice_id: int, delivery_id: int
) -> HttpResponse:
    case = _outreach_case(request, notice_id, delivery_id)
    followup.outreach_assign(actor=request.user, delivery=case, assignee=request.user)
    return redirect("delivery:outreach", notice_id=notice_id)


@require_POST
def outreach_close(request: AuthenticatedRequest, notice_id: int, delivery_id: int) -> HttpResponse:
    case = _outreach_case(request, notice_id, delivery_id)
    form = OutreachCloseForm(request.POST)
    if form.is_valid():
        followup.outreach_close(
            actor=request.user, delivery=case, outcome=form.cleaned_data["outcome"]
        )
    else:
        flash.error(request, _("Say how the case ended."))
    return redirect("delivery:outreach", notice_id=notice_id)


@public_view
@csrf_protect
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The public page a recipient opens from the notice's Confirm button (no login)."""
    delivery = followup.delivery_for_token(token)
    if delivery is None:
        return render(request, "delivery/confirm.html", {"invalid": True}, status=404)
    if followup.delivery_withdrawn(delivery):
        # GET and POST alike: no text, no button, nothing recorded.
        return render(request, "delivery/confirm.html", {"withdrawn": True})
    context: dict[str, object] = {"delivery": delivery, "notice": delivery.plan.notice}
    if request.method == "POST":
        form = ConfirmForm(request.POST)
        lat = lon = None
        if form.is_valid():
            lat, lon = form.cleaned_data["latitude"], form.cleaned_data["longitude"]
        try:
            delivery = followup.delivery_confirm(token=token, latitude=lat, longitude=lon)
        except ApplicationError as exc:
            context["error"] = exc.message
        context["delivery"] = delivery
    return render(request, "delivery/confirm.html", context)


@public_view
@require_GET
def notice_page(request: HttpRequest, token: str) -> HttpResponse:
    """The whole text of a sent notice, opened from its image card (no login)."""
    plan = selectors.plan_for_public_token(token)
    if plan is None:
        return render(request, "delivery/notice_page.html", {"invalid": True}, status=404)
    withdrawn = plan.status in (PlanStatus.RECALLING, PlanStatus.RECALLED)
    return render(
        request, "delivery/notice_page.html", {"notice": plan.notice, "withdrawn": withdrawn}
    )
