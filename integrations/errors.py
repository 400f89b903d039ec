"""Refusals of machine requests: every one becomes a JSON error with a status, a code and a reason."""

from __future__ import annotations


class TriggerRefused(Exception):  # noqa: N818 - a refusal, not a fault
    """The request was refused; nothing was created. `message` is safe to return to the caller."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        audit: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        # False for refusals counted elsewhere (a burst's later rate-limit refusals).
        self.audit = audit
        # The integration the request named, once known (an Integration; typed loosely to keep
        # this module free of models).
        self.integration: object | None = None

    def as_dict(self) -> dict[str, object]:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}
