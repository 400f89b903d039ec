"""Typed exceptions raised by :mod:`dingtalk`.

Every error raised by :class:`dingtalk.client.DingTalkClient` is a :class:`DingTalkError`.
``is_transient`` tells a caller (typically a Celery task) whether retrying later can help;
the client itself never retries anything except the single token refresh. Exception text
never contains access tokens or app secrets: messages are built from error codes, API names
and DingTalk's ``errmsg`` only.
"""

from __future__ import annotations

import enum


class ThrottleScope(enum.StrEnum):
    """Whom a :class:`Throttled` slows down."""

    APP_API = "app_api"  # this app's calls to this API (90018)
    GLOBAL = "global"  # DingTalk as a whole (90002, HTTP 429)
    BUSY = "busy"  # system busy (-1)
    BAN = "ban"  # a temporary ban of the app (9000x)
    IP_BAN = "ip_ban"  # the egress IP (HTML ban page, status 1111)


class DingTalkError(Exception):
    """Base class. ``errcode`` is DingTalk's code when the server sent one."""

    is_transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        api: str = "",
        errcode: int | None = None,
        errmsg: str = "",
        sub_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.api = api
        self.errcode = errcode
        self.errmsg = errmsg
        self.sub_code = sub_code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.api:
            parts.append(f"api={self.api}")
        if self.errcode is not None:
            parts.append(f"errcode={self.errcode}")
        if self.sub_code:
            parts.append(f"sub_code={self.sub_code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts)


class InvalidCredentials(DingTalkError):  # noqa: N818 - names follow the issue's vocabulary
    """gettoken refused the app key / secret (40089, 40001 on gettoken, 40002...)."""


class TokenExpired(DingTalkError):  # noqa: N818 - names follow the issue's vocabulary
    """The token stayed invalid even after one refresh; a later attempt may succeed."""

    is_transient = True


class Throttled(DingTalkError):  # noqa: N818 - names follow the issue's vocabulary
    """DingTalk asked us to slow down (90018, 90002, -1, IP ban page, status 1111).

    ``retry_after`` is the number of seconds to wait before the next call from this app
    (or from this egress IP when ``scope`` is ``ThrottleScope.IP_BAN``).
    """

    is_transient = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        scope: ThrottleScope,
        api: str = "",
        errcode: int | None = None,
        errmsg: str = "",
        sub_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            api=api,
            errcode=errcode,
            errmsg=errmsg,
            sub_code=sub_code,
            request_id=request_id,
        )
        self.retry_after = retry_after
        self.scope = scope


class QuotaExhausted(DingTalkError):  # noqa: N818 - names follow the issue's vocabulary
    """Monthly metered-call quota used up (90020); retrying this month is pointless."""


class PermissionDenied(DingTalkError):  # noqa: N818 - names follow the issue's vocabulary
    """The app lacks an API permission (60011, 88/60011)."""


class IpNotWhitelisted(PermissionDenied):
    """The calling server's IP is not on the app's whitelist (60020)."""


class InvalidRequest(DingTalkError):  # noqa: N818 - names follow the issue's vocabulary
    """DingTalk rejected the parameters (40035, 400002, 40056, 60003...)."""


class UuidRepeated(InvalidRequest):
    """The Service Window already has a send with this ``uuid`` (``uuid.repeat``): the earlier
    call was accepted, so this one delivered nothing."""


class ResultUnavailable(InvalidRequest):
    """getsendresult refused: task too large (41052) or outside its 24-hour window."""


class ServerError(DingTalkError):
    """HTTP 5xx from DingTalk."""

    is_transient = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        api: str = "",
        errcode: int | None = None,
        errmsg: str = "",
        sub_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            api=api,
            errcode=errcode,
            errmsg=errmsg,
            sub_code=sub_code,
            request_id=request_id,
        )
        self.status = status


class TransportError(ServerError):
    """Timeout, connection failure or a body that is not JSON.

    ``ambiguous`` is true when the request may have reached DingTalk (read timeout or a
    dropped connection after sending): a send may have been accepted, so the caller must
    not blindly resend.
    """

    def __init__(self, message: str, *, ambiguous: bool = False, api: str = "") -> None:
        super().__init__(message, api=api)
        self.ambiguous = ambiguous


class CallbackCryptoError(DingTalkError):
    """An event-push payload failed signature check, decryption or owner-key check."""


class MessageInvalid(ValueError):  # noqa: N818 - names follow the issue's vocabulary
    """A message violates DingTalk's documented limits; raised before any HTTP call."""

    def __init__(
        self,
        field: str,
        problem: str,
        *,
        code: str = "invalid",
        length: int | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        # For callers that explain the problem in their own words (notices.content_errors):
        # "required", "too_long" / "too_big" (with length and limit), "url", or "invalid".
        self.code = code
        self.length = length
        self.limit = limit
