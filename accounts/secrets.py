"""Resolve a department's DingTalk app secret from its reference (env:NAME or file:PATH)."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from common.errors import ApplicationError


def resolve_secret_ref(ref: str) -> str:
    """Return the secret a reference points at; the error never contains the secret."""
    if ref.startswith("env:"):
        value = os.environ.get(ref[4:], "")
        if not value:
            raise ApplicationError(
                f"The environment variable {ref[4:]} is not set.", code="secret_missing"
            )
        return value
    if ref.startswith("file:"):
        path = Path(ref[5:])
        if not path.is_absolute():
            path = Path(settings.BASE_DIR) / path
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError:
            raise ApplicationError(
                f"The secret file {path} cannot be read.", code="secret_missing"
            ) from None
        if not value:
            raise ApplicationError(f"The secret file {path} is empty.", code="secret_missing")
        return value
    raise ApplicationError(
        "No DingTalk app secret is configured for this department.", code="secret_missing"
    )
