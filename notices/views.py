"""Notice pages: list, compose with live preview, detail, approval inbox, and JSON endpoints.

Views parse, fetch through selectors and call one service; every rule (who may approve, what
content is allowed) is enforced by notices' services (notices.services, notices.approval,
notices.templating), so these pages cannot bypass it.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import permissions as perms
from accounts.selectors import department_get_for_user, department_list_for_user
from audit.models import AuditEvent
from common.errors import ApplicationError
from common.types import AuthenticatedRequest
from delivery.channels import preflight_channels
from dingtalk import messages as dt
from notices import approval, approval_view, selectors, services, templating, voice
from notices import content as nc
from notices.audit_actions import NoticeOperation
from notices.errors import NoticeInvalid
from notices.forms import (
    ApproveForm,
    NoticeForm,
    ReasonForm,
    TemplateValuesForm,
    notice_initial,
    template_initial,
)
from notices.models import MessageKind, Notice, NoticeTemplate, Status
from notices.preflight import audience_queryset, preflight, send_problems
from notices.voice_clips import notice_transcript


def _flash_error(request: AuthenticatedRequest, exc: Exception) -> None:
    messages.error(request, str(getattr(exc, "message", None) or exc))


def notice_list(request: AuthenticatedRequest) -> HttpResponse:
    notices = selectors.notice_list_for_user(user=request.user)
    status = request.GET.get("status", "")
    if status in Status.values:
        notices = notices.filter(status=status)
    return render(
        request,
        "notices/list.html",
        {
            "notices": notices[:200],
            "status": status,
            "statuses": Status.choices,
            "compose_departments": department_list_for_user(
                user=request.user, perm=perms.COMPOSE_NOTICE
            ),
        },
    )


def _template_context(
    request: AuthenticatedRequest, department: Any
) -> tuple[NoticeTemplate | None, TemplateValuesForm | None, dict[str, Any] | None]:
    """The chosen template, its placeholder form, and (when all are filled) the filled fields."""
    raw = request.GET.get("template", "")
    if not raw.isdigit():
        return None, None, None
    template = selectors.template_get_for_user(
        user=request.user, department=department, pk=int(raw)
    )
    names = templating.template_placeholders(template)
    submitted = not names or any(k.startswith("value_") for k in request.GET)
    values_form = TemplateValuesForm(request.GET if submitted else None, names=names)
    if not submitted:
        return template, values_form, None
    if not values_form.is_valid():
        return template, values_form, None
    values = {k.removeprefix("value_"): v for k, v in values_form.cleaned_data.items()}
    try:
        return template, values_form, templating.template_fill(template, values)
    except NoticeInvalid as exc:
        for name, errors in exc.errors.items():
            for error in errors:
                values_form.add_error(name if name in values_form.fields else None, error)
        return template, values_form, None


def _editor(request: AuthenticatedRequest, department: Any, notice: Notice | None) -> HttpResponse:
    template, values_form, filled = (None, None, None)
    if notice is None:
        template, values_form, filled = _template_context(request, department)
    if request.method == "POST":
        form = NoticeForm(request.POST, request.FILES, department=department)
        if form.is_valid():
            fields = form.notice_fields()
            try:
                if notice is None and form.cleaned_data.get("template"):
                    chosen = selectors.template_get_for_user(
                        user=request.user, department=department, pk=form.cleaned_data["template"]
                    )
                    saved = services.notice_save(
                        actor=request.user,
                        department=department,
                        fields={**fields, "template": chosen, "source": "template"},
                        upload=form.cleaned_data.get("upload"),
                        duration_s=form.cleaned_data.get("duration_s"),
                    )
                else:
                    saved = services.notice_save(
                        actor=request.user,
                        department=department,
                        fields=fields,
                        notice=notice,
                        upload=form.cleaned_data.get("upload"),
                        duration_s=form.cleaned_data.get("duration_s"),
                    )
            except NoticeInvalid as exc:
                form.add_service_errors(exc.errors)
            except ApplicationError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(
                    request, _("Notice saved as version %(v)d.") % {"v": saved.version}
                )
                return redirect("notices:detail", pk=saved.pk)
    elif notice is not None:
        form = NoticeForm(initial=notice_initial(notice), department=department)
    elif filled is not None and template is not None:
        initial = template_initial(filled, template)
        if template.expires_after_minutes:
            initial["expires_at"] = timezone.localtime() + timedelta(
                minutes=template.expires_after_minutes
            )
        form = NoticeForm(initial=initial, department=department)
    else:
        form = NoticeForm(initial={"tier": "targeted", "kind": "text"}, department=department)
    templates = selectors.template_list_for_user(user=request.user, department=department)
    return render(
        request,
        "notices/compose.html",
        {
            "department": department,
            "notice": notice,
            "form": form,
            "templates": templates,
            "template": template,
            "values_form": values_form,
            "limits": _limits(),
            "voice_available": voice.voice_available(),
            "voice_unavailable": voice.unavailable_message(),
            "transcript": notice_transcript(notice) if notice and notice.voice_from_text else "",
        },
    )


@require_GET
def voice_clip(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """The notice's Cantonese clip as WAV for the page's player (browsers do not play AMR)."""
    notice = selectors.notice_get_for_user(user=request.user, pk=pk)
    clip = notice.attachment
    if not notice.voice_from_text or clip is None or clip.media_type != MessageKind.VOICE:
        raise Http404("This notice has no voice clip.")
    try:
        with clip.file.open("rb") as handle:
            wav = voice.decode_to_wav(handle.read())
    except ApplicationError as exc:
        return HttpResponse(exc.message, status=503, content_type="text/plain; charset=utf-8")
    response = HttpResponse(wav, content_type="audio/wav")
    response["Cache-Control"] = "private, max-age=300"
    return response


def _limits() -> dict[str, int]:
    return {
        "bytes": dt.MAX_MSG_BYTES,
        "buttons": dt.MAX_BUTTONS,
        "button_title": dt.MAX_BUTTON_TITLE_CHARS,
    }


@require_http_methods(["GET", "POST"])
def compose(request: AuthenticatedRequest, code: str) -> HttpResponse:
    try:
        department = department_get_for_user(
            user=request.user, code=code, perm=perms.COMPOSE_NOTICE
        )
    except Http404:
        services.compose_refused(actor=request.user, code=code)
        raise
    return _editor(request, department, None)


@require_http_methods(["GET", "POST"])
def edit(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    notice = services.notice_get_for_change(
        actor=request.user, pk=pk, operation=NoticeOperation.UPDATE
    )
    return _editor(request, notice.department, notice)


@require_POST
def preview(request: AuthenticatedRequest, code: str) -> JsonResponse:
    """Live preview of unsaved compose data: DingTalk messages, sizes, problems, pre-flight."""
    started = time.perf_counter()
    department = department_get_for_user(user=request.user, code=code, perm=perms.COMPOSE_NOTICE)
    form = NoticeForm(request.POST, department=department)
    form.is_valid()  # partial data still previews; field errors are returned alongside
    data = form.cleaned_data
    fields = (
        form.notice_fields()
        if "kind" in data and "tier" in data and "classification" in data
        else {}
    )
    content = nc.Content(
        **{k: v for k, v in fields.items() if k in nc.Content.__dataclass_fields__}
    )
    languages = {lang: nc.language_stats(content, lang).as_dict() for lang in content.languages()}
    errors: dict[str, list[str]] = {k: [str(e) for e in v] for k, v in form.errors.items()}
    for name, problems in nc.validate_content(content).items():
        if name == "attachment" and (
            request.POST.get("has_attachment") or request.POST.get("voice_from_text")
        ):
            continue
        errors.setdefault(name, []).extend(problems)
    figures = preflight(
        department=department,
        tier=content.tier,
        segments=fields.get("segments", []),
        languages=len(content.languages()) or 1,
        requires_confirmation=content.requires_confirmation,
        kind=content.kind,
        reminders=int(data.get("max_reminders") or 0),
    )
    return JsonResponse(
        {
            "languages": languages,
            "errors": errors,
            "preflight": figures,
            "required_approvals": 2
            if content.tier == "citywide"
            or fields.get("high_risk")
            or figures["recipients"] > figures["two_approvers_above"]
            or any("high" in (s.risk_levels or []) for s in fields.get("segments", []))
            else 1,
            "took_ms": round((time.perf_counter() - started) * 1000, 1),
        }
    )


def detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    notice = selectors.notice_get_for_user(user=request.user, pk=pk)
    department = notice.department
    content = nc.content_from_notice(notice)
    stats = [nc.language_stats(content, lang) for lang in content.languages()]
    history = AuditEvent.objects.filter(
        target_type="notices.Notice", target_id=str(notice.pk)
    ).order_by("sequence")
    return render(
        request,
        "notices/detail.html",
        {
            "notice": notice,
            "stats": stats,
            "versions": notice.versions.select_related("created_by"),
            "contributions": notice.contributions.select_related("user"),
            "approvals": notice.approvals.select_related("approver"),
            "rejections": notice.rejections.select_related("by"),
            "history": history,
            "required": approval.required_approvals(notice),
            "have": approval.approval_count(notice),
            "segments": notice.segments.all(),
            "can_compose": perms.has_department_perm(
                request.user, perms.COMPOSE_NOTICE, department
            ),
            "can_approve": perms.has_department_perm(
                request.user, perms.APPROVE_NOTICE, department
            ),
            "approve_form": ApproveForm(initial={"version_hash": notice.version_hash}),
            "decision": approval_view.decision_for(request.user, notice),
            # What the author saw, for the approver (previews, pre-flight, rule, authors).
            **(approval_view.review_context(notice) if notice.status == Status.SUBMITTED else {}),
            # What would stop the send (the app, paused notices, daily caps), told to the
            # approver as the compose page's pre-flight told the author.
            "send_problems": (
                send_problems(
                    department,
                    audience_queryset(department, notice.tier, list(notice.segments.all())),
                )
                if notice.status == Status.SUBMITTED
                else []
            ),
            "reason_form": ReasonForm(),
            "transcript": notice_transcript(notice) if notice.voice_from_text else "",
            "channels": preflight_channels(
                department,
                notice.tier,
                list(notice.segments.all()),
                requires_confirmation=notice.requires_confirmation,
                kind=notice.kind,
            )
            if notice.status == Status.SUBMITTED
            else None,
        },
    )


@require_POST
def submit(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    notice = services.notice_get_for_change(
        actor=request.user, pk=pk, operation=NoticeOperation.SUBMIT
    )
    try:
        services.notice_submit(actor=request.user, notice=notice)
    except NoticeInvalid as exc:
        messages.error(request, exc.message)
    except (ApplicationError, PermissionDenied) as exc:
        _flash_error(request, exc)
    else:
        messages.success(request, _("Submitted for approval. The supervisors have been alerted."))
    return redirect("notices:detail", pk=notice.pk)


@require_POST
def cancel(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    notice = services.notice_get_for_change(
        actor=request.user, pk=pk, operation=NoticeOperation.CANCEL
    )
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Give the reason for cancelling."))
        return redirect("notices:detail", pk=notice.pk)
    try:
        services.notice_cancel(
            actor=request.user, notice=notice, reason=form.cleaned_data["reason"]
        )
    except (ApplicationError, PermissionDenied) as exc:
        _flash_error(request, exc)
    else:
        messages.success(request, _("Notice cancelled."))
    return redirect("notices:detail", pk=notice.pk)


def _next(request: AuthenticatedRequest, notice: Notice) -> HttpResponse:
    if request.POST.get("next") == "inbox":
        return redirect("notices:inbox")
    return redirect("notices:detail", pk=notice.pk)


@require_POST
def approve(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    notice = approval.notice_get_for_decision(
        actor=request.user, pk=pk, operation=NoticeOperation.APPROVE
    )
    form = ApproveForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("The approval form was incomplete."))
        return _next(request, notice)
    try:
        result = approval.notice_approve(
            actor=request.user,
            notice=notice,
            version_hash=form.cleaned_data["version_hash"],
            totp_token=form.cleaned_data.get("totp_token") or None,
            reach_acknowledged=bool(form.cleaned_data.get("reach_acknowledged")),
        )
    except (ApplicationError, PermissionDenied) as exc:
        _flash_error(request, exc)
    else:
        if result.status == Status.SUBMITTED:
            messages.success(request, _("Your approval is recorded; a second approver is needed."))
        else:
            messages.success(
                request, _("Approved: %(status)s.") % {"status": result.get_status_display()}
            )
    return _next(request, notice)


@require_POST
def reject(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    notice = approval.notice_get_for_decision(
        actor=request.user, pk=pk, operation=NoticeOperation.REJECT
    )
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Give the reason for rejecting."))
        return _next(request, notice)
    try:
        services.notice_reject(
            actor=request.user, notice=notice, reason=form.cleaned_data["reason"]
        )
    except (ApplicationError, PermissionDenied) as exc:
        _flash_error(request, exc)
    else:
        messages.success(request, _("Rejected and returned to the author as a draft."))
    return _next(request, notice)


def inbox(request: AuthenticatedRequest) -> HttpResponse:
    now = timezone.now()
    rows: list[dict[str, Any]] = []
    for notice in selectors.approval_inbox_for_user(user=request.user).prefetch_related("segments"):
        rows.append(
            {
                "notice": notice,
                "decision": approval_view.decision_for(request.user, notice),
                "required": approval.required_approvals(notice),
                "have": approval.approval_count(notice),
                "waited_minutes": int((now - (notice.submitted_at or now)).total_seconds() // 60),
                "form": ApproveForm(initial={"version_hash": notice.version_hash}),
            }
        )
    # Waiting for this person first; then what waits for someone else, and why.
    mine = [row for row in rows if row["decision"].may_approve]
    others = [row for row in rows if not row["decision"].may_approve]
    return render(
        request,
        "notices/inbox.html",
        {"rows": mine, "others": others, "reason_form": ReasonForm()},
    )


def _json_body(request: AuthenticatedRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _notice_json(notice: Notice) -> dict[str, Any]:
    return {
        "id": notice.pk,
        "status": notice.status,
        "version": notice.version,
        "version_hash": notice.version_hash,
        "reach": notice.reach,
        # Why it waits again (an audience, risk or reach change after submission), in English.
        "status_reason": notice.status_reason,
        "approvals": approval.approval_count(notice),
        "required_approvals": approval.required_approvals(notice),
    }


@require_POST
def api_approve(request: AuthenticatedRequest, pk: int) -> JsonResponse:
    """JSON: {"version_hash", "totp_token"?, "reach_acknowledged"?} -> the notice's state."""
    notice = approval.notice_get_for_decision(
        actor=request.user, pk=pk, operation=NoticeOperation.APPROVE
    )
    body = _json_body(request)
    try:
        result = approval.notice_approve(
            actor=request.user,
            notice=notice,
            version_hash=str(body.get("version_hash") or ""),
            totp_token=str(body.get("totp_token") or "") or None,
            reach_acknowledged=body.get("reach_acknowledged") is True,
        )
    except PermissionDenied as exc:
        return JsonResponse(
            {"error": str(getattr(exc, "message", exc)), "code": getattr(exc, "code", "denied")},
            status=403,
        )
    except ApplicationError as exc:
        return JsonResponse({"error": exc.message, "code": exc.code}, status=400)
    return JsonResponse(_notice_json(result))


@require_POST
def api_reject(request: AuthenticatedRequest, pk: int) -> JsonResponse:
    notice = approval.notice_get_for_decision(
        actor=request.user, pk=pk, operation=NoticeOperation.REJECT
    )
    body = _json_body(request)
    try:
        result = services.notice_reject(
            actor=request.user, notice=notice, reason=str(body.get("reason") or "")
        )
    except PermissionDenied as exc:
        return JsonResponse(
            {"error": str(getattr(exc, "message", exc)), "code": getattr(exc, "code", "denied")},
            status=403,
        )
    except ApplicationError as exc:
        return JsonResponse({"error": exc.message, "code": exc.code}, status=400)
    return JsonResponse(_notice_json(result))
