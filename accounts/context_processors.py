from __future__ import annotations

from django.http import HttpRequest

from accounts.models import Membership
from common.types import is_verified


def staff_context(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not is_verified(user):
        return {"staff_memberships": []}
    memberships = list(Membership.objects.filter(user=user).select_related("department"))
    return {"staff_memberships": memberships}
