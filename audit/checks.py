"""System checks: the retention period cannot be configured below a year."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

MINIMUM_RETENTION_DAYS = 365


@register()
def check_retention(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = getattr(settings, "AUDIT_RETENTION_DAYS", None)
    if not isinstance(value, int) or isinstance(value, bool) or value < MINIMUM_RETENTION_DAYS:
        return [
            Error(
                f"AUDIT_RETENTION_DAYS is {value!r}; audit events must be kept at least "
                f"{MINIMUM_RETENTION_DAYS} days.",
                hint=f"Set AUDIT_RETENTION_DAYS to {MINIMUM_RETENTION_DAYS} or more.",
                id="audit.E001",
            )
        ]
    return []


def retention_days() -> int:
    """The configured retention, never less than the minimum even if the check was silenced."""
    value = getattr(settings, "AUDIT_RETENTION_DAYS", MINIMUM_RETENTION_DAYS)
    return max(int(value), MINIMUM_RETENTION_DAYS)
