"""A department's DingTalk app as a client: credentials resolved by reference, tokens in Django's cache.

Delivery, directory sync and approver alerts all get their client here, so a token fetched by
one worker is reused by every other (Redis cache in production).
"""

from __future__ import annotations

import hashlib
import threading

from django.conf import settings
from django.core.cache import cache

from accounts.models import Department
from accounts.secrets import resolve_secret_ref
from common.errors import ApplicationError
from dingtalk.client import DingTalkClient


class DjangoCacheTokenStore:
    """dingtalk.tokens.TokenCache backed by Django's cache."""

    prefix = "portal:"

    def get(self, key: str, /) -> str | None:
        value = cache.get(self.prefix + key)
        return value if isinstance(value, str) else None

    def set(self, key: str, value: str, ttl: float, /) -> None:
        cache.set(self.prefix + key, value, timeout=max(1, int(ttl)))

    def delete(self, key: str, /) -> None:
        cache.delete(self.prefix + key)


_clients: dict[tuple[str, str, str, int], DingTalkClient] = {}
_lock = threading.Lock()


def client_for_department(department: Department, *, base_url: str | None = None) -> DingTalkClient:
    """The department's client, reused per process so its HTTP connection pool is shared.

    Raises ApplicationError (safe to show) when the department has no usable DingTalk app.
    """
    if not department.dingtalk_app_key or department.dingtalk_agent_id is None:
        raise ApplicationError(
            f"{department.code} has no DingTalk app key or agent id configured.",
            code="channel_unconfigured",
        )
    secret = resolve_secret_ref(department.dingtalk_secret_ref)
    url = base_url or settings.DINGTALK_BASE_URL
    # The key holds a digest of the secret, so a rotated secret gets a fresh client.
    key = (
        department.dingtalk_app_key,
        hashlib.sha256(secret.encode()).hexdigest(),
        url,
        department.dingtalk_agent_id,
    )
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = DingTalkClient(
                app_key=department.dingtalk_app_key,
                app_secret=secret,
                agent_id=department.dingtalk_agent_id,
                base_url=url,
                token_cache=DjangoCacheTokenStore(),
            )
            _clients[key] = client
    return client
