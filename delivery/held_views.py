"""A supervisor's decision on a batch held with an unknown outcome: send it again, or close it."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from common.errors import ApplicationError
from common.types import AuthenticatedRequest
from delivery import selectors
from delivery.services import uncertain


def _held_action(
    request: AuthenticatedRequest,
    notice_id: int,
    batch_id: int,
    action: Callable[..., bool],
    done_message: str,
) -> HttpResponse:
    """Run a supervisor's decision on a held batch and go back to the dashboard."""
    plan = selectors.plan_get_for_user(user=request.user, notice_id=notice_id)
    try:
        done = action(actor=request.user, notice_id=plan.notice_id, batch_id=batch_id)
    except PermissionDenied:
        raise Http404("No such delivery.") from None
    except ApplicationError as exc:
        flash.error(request, exc.message)
    else:
        if done:
            flash.success(request, done_message)
        else:
            flash.error(request, _("That batch is no longer held."))
    return redirect("delivery:dashboard", notice_id=notice_id)


@require_POST
def held_resend(request: AuthenticatedRequest, notice_id: int, batch_id: int) -> HttpResponse:
    return _held_action(
        request,
        notice_id,
        batch_id,
        uncertain.batch_held_resend,
        _("The held batch is being sent again."),
    )


@require_POST
def held_close(request: AuthenticatedRequest, notice_id: int, batch_id: int) -> HttpResponse:
    return _held_action(
        request,
        notice_id,
        batch_id,
        uncertain.batch_held_close,
        _("The held batch is closed without sending it again."),
    )
