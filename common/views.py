"""Markers for the few views that do not need an OTP-verified staff session.

Every other view is refused by accounts.middleware.RequireVerifiedStaffMiddleware until the
session is verified, so a page added later cannot forget the check: it has to opt out here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


def public_view(view: F) -> F:
    """Reachable without logging in (login page, public confirmation links, signed APIs)."""
    view.otp_exempt = True  # type: ignore[attr-defined]
    return view


def pre_otp_view(view: F) -> F:
    """Reachable after the password step but before the TOTP step (verify, enrol, logout)."""
    view.otp_pre_verification = True  # type: ignore[attr-defined]
    return view
