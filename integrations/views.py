"""Pages for system administrators (integrations) and supervisors (recalls a CAP Cancel asked for).

Thin: parse a form, fetch through a selector scoped to the user, call one service, render.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts import permissions as perms
from accounts.selectors import department_get_for_user
from common.errors import ApplicationError
from common.types import AuthenticatedRequest
from integrations import selectors
from integrations.forms import IntegrationForm, TriggerPolicyForm
from integrations.models import CancellationRequest, DepartmentTriggerPolicy
from integrations.services import callers, cancellations
from notices.models import NoticeTemplate

_SECRET_SESSION_KEY = "integrations:new-secret"  # noqa: S105 - a session key name, not a secret


def _templates(department_id: int) -> QuerySet[NoticeTemplate]:
    return NoticeTemplate.objects.filter(department_id=department_id, is_active=True).order_by(
        "name"
    )


def integration_list(request: AuthenticatedRequest) -> HttpResponse:
    integrations = selectors.integration_list_for_user(user=request.user)
    departments = perms.departments_with_perm(request.user, perms.ADMINISTER_DEPARTMENT).order_by(
        "code"
    )
    if not departments.exists():
        raise PermissionDenied
    policies = {
        p.department_id: p
        for p in DepartmentTriggerPolicy.objects.filter(department__in=departments)
    }
    rows = [
        {
            "department": d,
            "integrations": [i for i in integrations if i.department_id == d.pk],
            "target": selectors.trigger_target_for(d),
            "policy_form": TriggerPolicyForm(
                instance=policies.get(d.pk) or DepartmentTriggerPolicy(department=d),
                prefix=d.code,
            ),
        }
        for d in departments
    ]
    return render(request, "integrations/integration_list.html", {"rows": rows})


@require_http_methods(["GET", "POST"])
def integration_create(request: AuthenticatedRequest, code: str) -> HttpResponse:
    department = department_get_for_user(
        user=request.user, code=code, perm=perms.ADMINISTER_DEPARTMENT
    )
    form = IntegrationForm(request.POST or None, templates=_templates(department.pk))
    if request.method == "POST" and form.is_valid():
        try:
            integration, secret = callers.integration_create(
                actor=request.user,
                department=department,
                name=form.cleaned_data["name"],
                templates=form.cleaned_data["templates"],
                cap_template=form.cleaned_data["cap_template"],
                rate_limit_per_minute=form.cleaned_data["rate_limit_per_minute"],
            )
        except ApplicationError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            # Kept in the session only until the next page shows it, once.
            request.session[_SECRET_SESSION_KEY] = {"id": integration.pk, "secret": secret}
            return redirect("integrations:secret", pk=integration.pk)
    return render(
        request, "integrations/integration_form.html", {"form": form, "department": department}
    )


def integration_secret(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    integration = selectors.integration_get_for_user(user=request.user, pk=pk)
    held = request.session.pop(_SECRET_SESSION_KEY, None)
    secret = held["secret"] if held and held.get("id") == integration.pk else None
    response = render(
        request,
        "integrations/integration_secret.html",
        {
            "integration": integration,
            "secret": secret,
            "webhook_url": request.build_absolute_uri(
                reverse("api:trigger", kwargs={"integration": integration.slug})
            ),
            "cap_url": request.build_absolute_uri(
                reverse("api:cap", kwargs={"integration": integration.slug})
            ),
        },
    )
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
def integration_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    integration = selectors.integration_get_for_user(user=request.user, pk=pk)
    form = IntegrationForm(
        request.POST or None,
        initial=IntegrationForm.initial_for(integration),
        templates=_templates(integration.department_id),
    )
    if request.method == "POST" and form.is_valid():
        try:
            callers.integration_update(
                actor=request.user,
                integration=integration,
                name=form.cleaned_data["name"],
                templates=form.cleaned_data["templates"],
                cap_template=form.cleaned_data["cap_template"],
                clear_cap_template=form.cleaned_data["cap_template"] is None,
                rate_limit_per_minute=form.cleaned_data["rate_limit_per_minute"],
            )
        except ApplicationError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, _("Integration saved."))
            return redirect("integrations:detail", pk=integration.pk)
    triggers = selectors.trigger_list_for_user(user=request.user).filter(integration=integration)[
        :20
    ]
    return render(
        request,
        "integrations/integration_detail.html",
        {
            "integration": integration,
            "form": form,
            "triggers": triggers,
            "webhook_url": request.build_absolute_uri(
                reverse("api:trigger", kwargs={"integration": integration.slug})
            ),
            "cap_url": request.build_absolute_uri(
                reverse("api:cap", kwargs={"integration": integration.slug})
            ),
        },
    )


@require_POST
def integration_toggle(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    integration = selectors.integration_get_for_user(user=request.user, pk=pk)
    callers.integration_update(
        actor=request.user, integration=integration, active=not integration.active
    )
    if integration.active:
        messages.success(request, _("Integration disabled: its requests are refused."))
    else:
        messages.success(request, _("Integration enabled."))
    return redirect("integrations:detail", pk=integration.pk)


@require_POST
def integration_rotate(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    integration = selectors.integration_get_for_user(user=request.user, pk=pk)
    secret = callers.integration_rotate_secret(actor=request.user, integration=integration)
    request.session[_SECRET_SESSION_KEY] = {"id": integration.pk, "secret": secret}
    return redirect("integrations:secret", pk=integration.pk)


@require_POST
def policy_save(request: AuthenticatedRequest, code: str) -> HttpResponse:
    department = department_get_for_user(
        user=request.user, code=code, perm=perms.ADMINISTER_DEPARTMENT
    )
    form = TriggerPolicyForm(request.POST, prefix=department.code)
    if form.is_valid():
        callers.trigger_policy_set(
            actor=request.user,
            department=department,
            target_seconds=form.cleaned_data["target_seconds"],
        )
        messages.success(request, _("Target saved."))
    else:
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
    return redirect("integrations:list")


def recall_requests(request: AuthenticatedRequest) -> HttpResponse:
    waiting = selectors.cancellation_waiting_for_user(user=request.user)
    recent = selectors.cancellation_list_for_user(user=request.user).exclude(
        pk__in=waiting.values("pk")
    )[:20]
    return render(
        request,
        "integrations/recall_requests.html",
        {"waiting": waiting, "recent": recent},
    )


@require_POST
def recall_decide(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    cancellation: CancellationRequest | None = (
        selectors.cancellation_list_for_user(user=request.user).filter(pk=pk).first()
    )
    if cancellation is None:
        raise PermissionDenied
    confirm = request.POST.get("decision") == "recall"
    try:
        cancellations.cancellation_decide(
            actor=request.user, cancellation=cancellation, confirm=confirm
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, _("Recall started.") if confirm else _("Request dismissed; nothing recalled.")
        )
    return redirect("integrations:recalls")
