"""What notices' services raise when a rule refuses; the pages turn these into form errors."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import PermissionDenied

from common.errors import ApplicationError


class NoticeInvalid(ApplicationError):  # noqa: N818 - reads as the rule it names
    """The notice's content breaks a rule; `errors` maps form fields to messages."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors = {k: list(v) for k, v in errors.items()}
        first = next(iter(self.errors))
        super().__init__(
            "; ".join(m for msgs in self.errors.values() for m in msgs),
            field=None if first == "__all__" else first,
            code="notice_invalid",
        )


class ApprovalRefused(PermissionDenied):
    """An approval (or rejection) the rule does not allow; `code` names the rule."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TransitionRefused(ApplicationError):  # noqa: N818
    """A status change that is not allowed from the notice's current status."""
