"""Errors that services raise for a person to read (views turn them into form errors)."""

from __future__ import annotations


class ApplicationError(Exception):
    """A domain rule refused the request; `message` is safe to show to the user."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
