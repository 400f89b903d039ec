"""The navigation's Delivery link shows only to people who may see some department's deliveries."""

from __future__ import annotations

from django import template
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from accounts import permissions as perms

register = template.Library()


@register.filter
def sees_deliveries(user: AbstractBaseUser | AnonymousUser) -> bool:
    return perms.departments_with_perm(user, perms.VIEW_NOTICES).exists()
