"""The month's metered DingTalk calls per department (dingtalk-api.md §9).

Standard edition: 5,000 metered calls a month; professional: 200,000. Token and directory
calls are exempt. Every metered call this portal makes goes through the rate governor, which
counts it; these functions read that count.
"""

from __future__ import annotations

from accounts.models import Department
from delivery.governor import edition_quota, get_governor


def monthly_quota(department: Department) -> int:
    return edition_quota(department.dingtalk_edition)


def _app_key(department: Department) -> str:
    return department.dingtalk_app_key or f"department:{department.code}"


def monthly_calls_used(department: Department) -> int:
    """Metered calls counted this month (China Standard Time months, like DingTalk's).

    Raises delivery.governor.GovernorUnavailable when the governor's store is down.
    """
    return get_governor().monthly_used(app_key=_app_key(department))


def monthly_calls_left(department: Department) -> int:
    return max(0, monthly_quota(department) - monthly_calls_used(department))
