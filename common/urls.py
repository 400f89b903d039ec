"""The portal's public address (settings.PORTAL_BASE_URL): every absolute link we send uses it."""

from __future__ import annotations

from django.conf import settings


def portal_url(path: str) -> str:
    """``path`` (from ``reverse``) as an absolute link on the portal's public address."""
    return str(settings.PORTAL_BASE_URL).rstrip("/") + "/" + path.lstrip("/")
