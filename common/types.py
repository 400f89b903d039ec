"""Request and user types shared by views, admin and services."""

from __future__ import annotations

from typing import TypeAlias

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

# Who a service acts for: a user, or None for the system (tasks, commands, integrations). Services
# that need a logged-in person take `User` instead.
Actor: TypeAlias = AbstractBaseUser | AnonymousUser | None


class AuthenticatedRequest(HttpRequest):
    user: User


def staff_user(request: HttpRequest) -> User:
    """The logged-in user of a staff request (the middleware has already refused anyone else)."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("Log in first.")
    return user


def is_verified(user: User | AnonymousUser | None) -> bool:
    """True when django-otp's middleware marked the session as past the second factor."""
    if user is None or not user.is_authenticated:
        return False
    check = getattr(user, "is_verified", None)
    return bool(check()) if callable(check) else False
