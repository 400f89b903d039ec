"""Login, second factor, enrolment, and the department pages."""

from __future__ import annotations

import base64
from typing import Any

import segno
from django.contrib import messages
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.forms import SetPasswordForm
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts import credentials, selectors, services
from accounts import permissions as perms
from accounts.auth import (
    OtpOutcome,
    has_authenticator,
    mark_enrolled_session,
    otp_verify,
    password_login,
)
from accounts.forms import DepartmentSettingsForm, EnrolForm, LoginForm, OtpForm
from audit.actions import AuditAction
from audit.services import audit_record
from common.errors import ApplicationError
from common.types import AuthenticatedRequest, is_verified
from common.views import pre_otp_view, public_view


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, {request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("accounts:home")


@public_view
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    if is_verified(request.user):
        return HttpResponseRedirect(_next_url(request))
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = password_login(
            request, username=form.cleaned_data["username"], password=form.cleaned_data["password"]
        )
        if user is not None:
            target = (
                reverse("accounts:verify") if has_authenticator(user) else reverse("accounts:enrol")
            )
            return HttpResponseRedirect(f"{target}?next={_next_url(request)}")
        form.add_error(
            None,
            _(
                "That username and password do not match. Repeated failures lock the account for a while."
            ),
        )
    return render(
        request, "accounts/login.html", {"form": form, "next": request.GET.get("next", "")}
    )


def lockout(
    request: HttpRequest, credentials: Any = None, *args: Any, **kwargs: Any
) -> HttpResponse:
    """django-axes calls this for a locked username+IP pair (AXES_LOCKOUT_CALLABLE)."""
    return render(request, "accounts/lockout.html", status=429)


@pre_otp_view
@require_http_methods(["GET", "POST"])
def verify(request: AuthenticatedRequest) -> HttpResponse:
    if is_verified(request.user):
        return HttpResponseRedirect(_next_url(request))
    if not has_authenticator(request.user):
        return HttpResponseRedirect(f"{reverse('accounts:enrol')}?next={_next_url(request)}")
    form = OtpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = otp_verify(
            request,
            user=request.user,
            token=form.cleaned_data["token"],
            backup=form.cleaned_data["backup"],
        )
        if result.outcome is OtpOutcome.VERIFIED:
            return HttpResponseRedirect(_next_url(request))
        if result.outcome is OtpOutcome.THROTTLED:
            form.add_error(
                "token",
                _("Too many wrong codes. Wait %(seconds)s seconds and try again.")
                % {"seconds": result.wait_seconds},
            )
        else:
            form.add_error(
                "token",
                _("That code is not valid. Check your authenticator app's clock and try again."),
            )
    return render(
        request, "accounts/verify.html", {"form": form, "next": request.GET.get("next", "")}
    )


@pre_otp_view
@require_http_methods(["GET", "POST"])
def enrol(request: AuthenticatedRequest) -> HttpResponse:
    if has_authenticator(request.user):
        # Replacing an authenticator needs the old one (or an administrator's reset), never just a password.
        return HttpResponseRedirect(reverse("accounts:verify"))
    device = services.totp_device_for_enrolment(user=request.user)
    form = EnrolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        codes = services.totp_enrol_confirm(
            user=request.user, device=device, token=form.cleaned_data["token"].strip()
        )
        if codes is not None:
            mark_enrolled_session(request, device)
            return render(
                request, "accounts/backup_codes.html", {"codes": codes, "next": _next_url(request)}
            )
        form.add_error(
            "token",
            _("That code does not match. Make sure you scanned the code shown on this page."),
        )
    qr = segno.make(device.config_url, error="m")
    return render(
        request,
        "accounts/enrol.html",
        {
            "form": form,
            "qr_data_uri": qr.svg_data_uri(scale=5, dark="#111"),
            "secret": _base32(device.bin_key),
            "next": request.GET.get("next", ""),
        },
    )


def _base32(key: bytes) -> str:
    raw = base64.b32encode(key).decode().rstrip("=")
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


@require_POST
def backup_codes(request: AuthenticatedRequest) -> HttpResponse:
    codes = services.backup_codes_issue(user=request.user)
    return render(
        request, "accounts/backup_codes.html", {"codes": codes, "next": reverse("accounts:home")}
    )


@pre_otp_view
@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        audit_record(actor=request.user, action=AuditAction.LOGGED_OUT, target=request.user)
    auth_logout(request)
    messages.info(request, _("You have logged out."))
    return redirect("accounts:login")


def home(request: AuthenticatedRequest) -> HttpResponse:
    departments = selectors.department_list_for_user(user=request.user)
    audiences = selectors.department_list_for_user(user=request.user, perm=perms.VIEW_AUDIENCE)
    return render(
        request,
        "accounts/home.html",
        {"departments": departments, "audience_departments": audiences},
    )


def department_detail(request: AuthenticatedRequest, code: str) -> HttpResponse:
    department = selectors.department_get_for_user(user=request.user, code=code)
    staff = selectors.staff_for_department(user=request.user, department=department)
    can_administer = perms.has_department_perm(
        request.user, perms.ADMINISTER_DEPARTMENT, department
    )
    return render(
        request,
        "accounts/department_detail.html",
        {"department": department, "staff": staff, "can_administer": can_administer},
    )


@require_http_methods(["GET", "POST"])
def department_settings(request: AuthenticatedRequest, code: str) -> HttpResponse:
    department = selectors.department_get_for_user(user=request.user, code=code)
    if not perms.has_department_perm(request.user, perms.ADMINISTER_DEPARTMENT, department):
        raise PermissionDenied
    form = DepartmentSettingsForm(request.POST or None, instance=department)
    if request.method == "POST" and form.is_valid():
        try:
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            services.department_update(actor=request.user, department=department, changes=changes)
        except ApplicationError as exc:
            form.add_error(exc.field, exc.message)
        else:
            messages.success(request, _("Department settings saved."))
            return redirect("accounts:department-detail", code=department.code)
    return render(
        request, "accounts/department_settings.html", {"department": department, "form": form}
    )


@public_view
@require_http_methods(["GET", "POST"])
def enrolment_link(request: HttpRequest, token: str) -> HttpResponse:
    """A person's own one-time link after a credential reset: choose a new password, then log
    in and enrol an authenticator as at a first login."""
    link = credentials.enrolment_link_get(token=token)
    if link is None:
        credentials.enrolment_link_refused(token=token, path="page")
        return render(request, "accounts/enrolment_link.html", {"invalid": True}, status=410)
    form = SetPasswordForm(link.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            credentials.enrolment_link_use(token=token, password=form.cleaned_data["new_password1"])
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                _("Your new password is set. Log in to enrol your authenticator app."),
            )
            return redirect("accounts:login")
    return render(request, "accounts/enrolment_link.html", {"form": form, "invalid": False})
