"""DingTalk oapi client for work notifications and directory reads (no Django).

One client per DingTalk app. Calls go through one pooled ``requests.Session`` with connect
and read timeouts. The access token is cached through a :class:`TokenCache` with a TTL of
``expires_in - 300`` s (so it is refreshed 5 minutes before expiry), and dropped, refreshed
and the call retried exactly once on 40001 / 40014 / 42001 or 88 with sub_code 40014.
Nothing else is retried here: every failure is raised as a typed :class:`DingTalkError`
whose ``is_transient`` lets the caller (a Celery task) decide.

Secrets and tokens never reach exception text or log lines; a logging filter also redacts
``access_token=`` and ``appsecret=`` from urllib3's debug lines, which print request URLs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError

from dingtalk.errors import (
    DingTalkError,
    InvalidCredentials,
    InvalidRequest,
    IpNotWhitelisted,
    PermissionDenied,
    QuotaExhausted,
    ResultUnavailable,
    ServerError,
    Throttled,
    ThrottleScope,
    TokenExpired,
    TransportError,
    UuidRepeated,
)
from dingtalk.messages import encode_msg, validate_media_upload, validate_msg
from dingtalk.tokens import InMemoryTokenCache, TokenCache

logger = logging.getLogger("dingtalk.client")

DEFAULT_BASE_URL = "https://oapi.dingtalk.com"
NEW_API_BASE_URL = "https://api.dingtalk.com"
TOKEN_REFRESH_MARGIN_S = 300
TOKEN_MIN_TTL_S = 60
MAX_USERIDS_PER_CALL = 100
MAX_DEPTS_PER_CALL = 20

TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# Seconds to wait: official advice is ~1 s after 90018/90002 and backing off on -1; an IP
# ban lasts 5 minutes; the other 9000x codes are short temporary bans.
RETRY_AFTER = {90018: 1.0, 90002: 1.0, -1: 1.0}
TEMPORARY_BAN_CODES = frozenset({90001, 90003, 90004, 90005, 90006, 90017})
IP_BAN_RETRY_AFTER_S = 300.0

_SECRET_IN_TEXT = re.compile(r"(access_token|appsecret|corpsecret)=[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    """Replace token and secret query values in ``text``."""
    return _SECRET_IN_TEXT.sub(r"\1=[redacted]", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _install_log_redaction() -> None:
    target = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())


@dataclass(frozen=True, slots=True)
class SendResult:
    task_id: int
    request_id: str | None


@dataclass(frozen=True, slots=True)
class SendProgress:
    progress_in_percent: int
    status: int  # 0 not started, 1 processing, 2 done

    @property
    def done(self) -> bool:
        return self.status == 2


@dataclass(frozen=True, slots=True)
class ForbiddenEntry:
    """One ``forbidden_list`` item: reason code, the threshold hit, the user."""

    code: int
    count: int
    userid: str


@dataclass(frozen=True, slots=True)
class SendResultLists:
    read: list[str]
    unread: list[str]
    failed: list[str]
    invalid: list[str]
    invalid_dept_ids: list[int]
    forbidden_userids: list[str]
    forbidden: list[ForbiddenEntry]

    def forbidden_codes(self) -> dict[str, int]:
        """userid -> reason code (143103 per-minute, 143105 daily cap, 143106 duplicate...)."""
        return {entry.userid: entry.code for entry in self.forbidden}


@dataclass(frozen=True, slots=True)
class MediaUpload:
    media_id: str
    type: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Department:
    dept_id: int
    name: str
    parent_id: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class User:
    userid: str
    name: str
    mobile: str | None
    state_code: str | None
    dept_id_list: list[int]
    active: bool
    title: str
    job_number: str
    unionid: str | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def e164_mobile(self) -> str | None:
        if not self.mobile:
            return None
        if self.mobile.startswith("+"):
            return self.mobile
        return f"+{self.state_code or '86'}{self.mobile}"

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> User:
        return cls(
            userid=str(data["userid"]),
            name=str(data.get("name", "")),
            mobile=data.get("mobile") or None,
            state_code=data.get("state_code") or None,
            dept_id_list=[int(d) for d in data.get("dept_id_list", [])],
            active=bool(data.get("active", True)),
            title=str(data.get("title", "")),
            job_number=str(data.get("job_number", "")),
            unionid=data.get("unionid") or None,
            raw=dict(data),
        )


@dataclass(frozen=True, slots=True)
class UserPage:
    users: list[User]
    has_more: bool
    next_cursor: int | None


def error_for(api: str, data: Mapping[str, Any]) -> DingTalkError:
    """Map one DingTalk error body to a typed exception."""
    errcode = int(data.get("errcode", -999))
    errmsg = str(data.get("errmsg", ""))[:300]
    sub_code = data.get("sub_code")
    sub = str(sub_code) if sub_code is not None else None
    request_id = data.get("request_id")
    rid = str(request_id) if request_id is not None else None
    common: dict[str, Any] = {
        "api": api,
        "errcode": errcode,
        "errmsg": errmsg,
        "sub_code": sub,
        "request_id": rid,
    }
    if errcode in TOKEN_ERRCODES or (errcode == 88 and sub == "40014"):
        return TokenExpired("access token rejected", **common)
    if errcode in RETRY_AFTER:
        scope = {
            90018: ThrottleScope.APP_API,
            90002: ThrottleScope.GLOBAL,
            -1: ThrottleScope.BUSY,
        }[errcode]
        return Throttled(
            f"throttled: {errmsg}", retry_after=RETRY_AFTER[errcode], scope=scope, **common
        )
    if errcode in TEMPORARY_BAN_CODES:
        return Throttled(
            f"temporarily banned: {errmsg}", retry_after=60.0, scope=ThrottleScope.BAN, **common
        )
    if errcode == 90020:
        return QuotaExhausted("monthly API call quota exhausted", **common)
    if errcode == 60020:
        return IpNotWhitelisted("server IP not in the app's whitelist", **common)
    if errcode == 60011 or (errcode == 88 and sub == "60011"):
        return PermissionDenied("app lacks the permission for this API", **common)
    if errcode == 88:
        return PermissionDenied(f"authentication exception: {errmsg}", **common)
    if errcode in (40089, 40002, 40013):
        return InvalidCredentials("app key or app secret rejected", **common)
    if errcode == 41052:
        return ResultUnavailable(f"result not available: {errmsg}", **common)
    return InvalidRequest(f"request rejected: {errmsg}", **common)


def new_api_error(api: str, status: int, data: Mapping[str, Any]) -> DingTalkError:
    """Map a refusal of the new API (HTTP 4xx ``{code, message, requestid}``, §0)."""
    code = str(data.get("code", ""))
    rid = data.get("requestid")
    common: dict[str, Any] = {
        "api": api,
        "errcode": status,
        "errmsg": str(data.get("message", ""))[:300],
        "sub_code": code or None,
        "request_id": str(rid) if rid is not None else None,
    }
    if code == "uuid.repeat":
        return UuidRepeated("uuid already used (uuid.repeat)", **common)
    if code == "InvalidAuthentication":
        return TokenExpired("access token rejected", **common)
    if "QpsLimitForAppkeyAndApi" in code or "QpmLimitForAppkeyAndApi" in code:
        return Throttled(
            f"throttled: {code}", retry_after=1.0, scope=ThrottleScope.APP_API, **common
        )
    if "QpsLimitForApi" in code or status == 429:
        return Throttled(
            f"throttled: {code}", retry_after=1.0, scope=ThrottleScope.GLOBAL, **common
        )
    if "ApiCountLimitForOrg" in code:
        return QuotaExhausted("monthly API call quota exhausted", **common)
    if "IpNotInWhiteList" in code:
        return IpNotWhitelisted("server IP not in the app's whitelist", **common)
    if status in (401, 403):
        return PermissionDenied(f"HTTP {status} {code}", **common)
    return InvalidRequest(f"request rejected: {code}", **common)


class DingTalkClient:
    """Client for one DingTalk app. Thread-safe for concurrent calls."""

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        agent_id: int,
        base_url: str = DEFAULT_BASE_URL,
        token_cache: TokenCache | None = None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.05, 10),
        clock: Callable[[], float] = time.time,
        new_api_base_url: str | None = None,
    ) -> None:
        self.app_key = app_key
        self._app_secret = app_secret
        self.agent_id = int(agent_id)
        self.base_url = base_url.rstrip("/")
        # The new API lives on its own host; a simulator serves both families on one address.
        self.new_api_base_url = (
            new_api_base_url
            or (NEW_API_BASE_URL if self.base_url == DEFAULT_BASE_URL else self.base_url)
        ).rstrip("/")
        self.timeout = timeout
        self._clock = clock
        self.token_cache: TokenCache = (
            token_cache if token_cache is not None else InMemoryTokenCache(clock)
        )
        self._own_session = session is None
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            # The environment (proxy, CA bundle) is read once here instead of on every request,
            # which requests would otherwise do: a quarter of a send's client-side time.
            session.trust_env = False
            session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                session.verify = bundle
        self.session = session
        _install_log_redaction()

    def __repr__(self) -> str:
        return f"DingTalkClient(app_key={self.app_key!r}, agent_id={self.agent_id}, base_url={self.base_url!r})"

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> DingTalkClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- token ---------------------------------------------------------------------------

    @property
    def token_cache_key(self) -> str:
        return f"dingtalk:access_token:{self.app_key}"

    def get_access_token(self, *, force_refresh: bool = False) -> str:
        """The cached token, or a fresh one from gettoken (cached for expires_in - 300 s)."""
        if not force_refresh:
            cached = self.token_cache.get(self.token_cache_key)
            if cached:
                return cached
        data = self._http(
            "GET",
            "/gettoken",
            "gettoken",
            params={"appkey": self.app_key, "appsecret": self._app_secret},
        )
        if data.get("errcode", 0) != 0:
            error = error_for("gettoken", data)
            if isinstance(error, TokenExpired):
                # On gettoken, 40001 means the secret is wrong, not that a token expired.
                raise InvalidCredentials(
                    "app key or app secret rejected", api="gettoken", errcode=error.errcode
                )
            raise error
        token = str(data["access_token"])
        expires_in = float(data.get("expires_in", 7200))
        self.token_cache.set(
            self.token_cache_key, token, max(TOKEN_MIN_TTL_S, expires_in - TOKEN_REFRESH_MARGIN_S)
        )
        return token

    # -- transport -----------------------------------------------------------------------------

    def _http(
        self,
        method: str,
        path: str,
        api: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        json_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        url = (self.new_api_base_url if json_body is not None else self.base_url) + path
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                data=data,
                files=files,
                json=json_body,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.ConnectTimeout:
            raise TransportError(f"connect timeout calling {api}", api=api) from None
        except requests.Timeout:
            raise TransportError(f"read timeout calling {api}", api=api, ambiguous=True) from None
        except requests.ConnectionError as exc:
            # Once a connection was open, whether DingTalk saw the request is unknown.
            reason = exc.args[0] if exc.args else None
            reason = getattr(reason, "reason", reason)
            ambiguous = not isinstance(reason, ConnectTimeoutError)
            raise TransportError(
                f"connection failed calling {api}", api=api, ambiguous=ambiguous
            ) from None
        except requests.RequestException as exc:
            raise TransportError(
                f"{type(exc).__name__} calling {api}", api=api, ambiguous=True
            ) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        return self._payload(api, response, elapsed_ms, new_api=json_body is not None)

    def _payload(
        self, api: str, response: requests.Response, elapsed_ms: float, *, new_api: bool
    ) -> dict[str, Any]:
        """The answer's JSON object, or the typed error its status, page or body means."""
        body = response.content
        if response.status_code >= 500:
            logger.warning("dingtalk %s: HTTP %s in %.0f ms", api, response.status_code, elapsed_ms)
            raise ServerError(
                f"HTTP {response.status_code} from {api}", api=api, status=response.status_code
            )
        content_type = response.headers.get("Content-Type", "")
        stripped = body.lstrip()[:64].lower()
        if "html" in content_type or stripped.startswith((b"<!doctype", b"<html")):
            logger.warning("dingtalk %s: IP ban page (HTTP %s)", api, response.status_code)
            raise Throttled(
                "egress IP banned (HTML answer)",
                retry_after=IP_BAN_RETRY_AFTER_S,
                scope=ThrottleScope.IP_BAN,
                api=api,
            )
        try:
            payload = json.loads(body)
        except ValueError:
            raise TransportError(
                f"non-JSON answer from {api} (HTTP {response.status_code})", api=api, ambiguous=True
            ) from None
        if not isinstance(payload, dict):
            raise TransportError(f"unexpected JSON from {api}", api=api, ambiguous=True)
        if "errcode" not in payload and payload.get("status") == 1111:
            wait_minutes = float(payload.get("wait", 5))
            raise Throttled(
                "egress IP banned (status 1111)",
                retry_after=wait_minutes * 60,
                scope=ThrottleScope.IP_BAN,
                api=api,
            )
        if response.status_code >= 400 and "errcode" not in payload:
            if "code" in payload and new_api:
                raise new_api_error(api, response.status_code, payload)
            if response.status_code == 429:
                raise Throttled(
                    f"HTTP 429 from {api}", retry_after=1.0, scope=ThrottleScope.GLOBAL, api=api
                )
            if response.status_code in (401, 403):
                raise PermissionDenied(f"HTTP {response.status_code} from {api}", api=api)
            raise InvalidRequest(f"HTTP {response.status_code} from {api}", api=api)
        logger.debug("dingtalk %s: errcode %s in %.0f ms", api, payload.get("errcode"), elapsed_ms)
        return payload

    def _call(
        self,
        path: str,
        api: str,
        data: Mapping[str, Any] | None = None,
        *,
        files: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST with the token; one refresh-and-retry on a token error, nothing else."""
        for attempt in (1, 2):
            token = self.get_access_token(force_refresh=attempt == 2)
            payload = self._http(
                "POST",
                path,
                api,
                params={**(query or {}), "access_token": token},
                data=data,
                files=files,
            )
            if payload.get("errcode", 0) == 0:
                return payload
            error = error_for(api, payload)
            if isinstance(error, TokenExpired) and attempt == 1:
                logger.info(
                    "dingtalk %s: token rejected (errcode %s), refreshing once", api, error.errcode
                )
                self.token_cache.delete(self.token_cache_key)
                continue
            logger.warning("dingtalk %s: %s", api, error)
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    def call_new_api(self, path: str, api: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST JSON to the new API (token in a header); one refresh-and-retry on a token error.

        Refusals come as HTTP 4xx ``{code, message}``; an oapi-style errcode body (the
        simulator's injected faults) is mapped as on oapi.
        """
        for attempt in (1, 2):
            token = self.get_access_token(force_refresh=attempt == 2)
            try:
                payload = self._http(
                    "POST",
                    path,
                    api,
                    json_body=body,
                    headers={"x-acs-dingtalk-access-token": token},
                )
                if payload.get("errcode", 0) != 0:
                    raise error_for(api, payload)
            except TokenExpired:
                if attempt == 2:
                    raise
                self.token_cache.delete(self.token_cache_key)
                continue
            return payload
        raise AssertionError("unreachable")  # pragma: no cover

    # -- work notifications ----------------------------------------------------------------------

    def send(
        self,
        msg: Mapping[str, Any],
        *,
        userids: Sequence[str] = (),
        dept_ids: Sequence[int] = (),
        to_all_user: bool = False,
    ) -> SendResult:
        """asyncsend_v2. At most 100 userids and 20 departments; the message is validated first.

        Success means DingTalk accepted the task; per-recipient outcome (including silent
        flow-control drops) comes from :meth:`get_send_result`.
        """
        checked = validate_msg(msg)
        if len(userids) > MAX_USERIDS_PER_CALL:
            raise InvalidRequest(
                f"at most {MAX_USERIDS_PER_CALL} userids per call, got {len(userids)}",
                api="asyncsend_v2",
            )
        if len(dept_ids) > MAX_DEPTS_PER_CALL:
            raise InvalidRequest(
                f"at most {MAX_DEPTS_PER_CALL} departments per call, got {len(dept_ids)}",
                api="asyncsend_v2",
            )
        if not userids and not dept_ids and not to_all_user:
            raise InvalidRequest(
                "no recipients: give userids, dept_ids or to_all_user", api="asyncsend_v2"
            )
        if any(not u or "," in u for u in userids):
            raise InvalidRequest(
                "userids must be non-empty and contain no commas", api="asyncsend_v2"
            )
        data: dict[str, Any] = {"agent_id": str(self.agent_id), "msg": encode_msg(checked)}
        if userids:
            data["userid_list"] = ",".join(userids)
        if dept_ids:
            data["dept_id_list"] = ",".join(str(int(d)) for d in dept_ids)
        if to_all_user:
            data["to_all_user"] = "true"
        payload = self._call("/topapi/message/corpconversation/asyncsend_v2", "asyncsend_v2", data)
        request_id = payload.get("request_id")
        return SendResult(
            int(payload["task_id"]), str(request_id) if request_id is not None else None
        )

    def get_send_progress(self, task_id: int) -> SendProgress:
        payload = self._call(
            "/topapi/message/corpconversation/getsendprogress",
            "getsendprogress",
            {"agent_id": str(self.agent_id), "task_id": str(task_id)},
        )
        progress = payload.get("progress", {})
        return SendProgress(
            int(progress.get("progress_in_percent", 0)), int(progress.get("status", 0))
        )

    def get_send_result(self, task_id: int) -> SendResultLists:
        """Read/unread/failed/invalid/forbidden lists; only for tasks of <= 100 recipients, 24 h."""
        payload = self._call(
            "/topapi/message/corpconversation/getsendresult",
            "getsendresult",
            {"agent_id": str(self.agent_id), "task_id": str(task_id)},
        )
        result = payload.get("send_result", {})

        def ids(name: str) -> list[str]:
            return [str(v) for v in result.get(name) or []]

        return SendResultLists(
            read=ids("read_user_id_list"),
            unread=ids("unread_user_id_list"),
            failed=ids("failed_user_id_list"),
            invalid=ids("invalid_user_id_list"),
            invalid_dept_ids=[int(v) for v in result.get("invalid_dept_id_list") or []],
            forbidden_userids=ids("forbidden_user_id_list"),
            forbidden=[
                ForbiddenEntry(
                    int(item.get("code", 0)), int(item.get("count", 0)), str(item.get("userid", ""))
                )
                for item in result.get("forbidden_list") or []
            ],
        )

    def recall(self, task_id: int) -> None:
        """Withdraw a notice sent within the last 24 hours (note the msg_task_id field)."""
        self._call(
            "/topapi/message/corpconversation/recall",
            "recall",
            {"agent_id": str(self.agent_id), "msg_task_id": str(task_id)},
        )

    def update_status_bar(
        self, task_id: int, status_value: str, status_bg: str | None = None
    ) -> None:
        data = {
            "agent_id": str(self.agent_id),
            "task_id": str(task_id),
            "status_value": status_value,
        }
        if status_bg is not None:
            data["status_bg"] = status_bg
        self._call("/topapi/message/corpconversation/status_bar/update", "status_bar_update", data)

    def upload_media(self, media_type: str, filename: str, content: bytes) -> MediaUpload:
        """media/upload as multipart; ``type`` goes on the URL too, as the docs advise."""
        validate_media_upload(media_type, filename, len(content))
        payload = self._call(
            "/media/upload",
            "media_upload",
            {"type": media_type},
            files={"media": (filename, content)},
            query={"type": media_type},
        )
        return MediaUpload(
            str(payload["media_id"]),
            str(payload.get("type", media_type)),
            int(payload.get("created_at", 0)),
        )

    # -- directory ---------------------------------------------------------------------------

    def list_sub_departments(self, dept_id: int = 1, language: str = "zh_CN") -> list[Department]:
        payload = self._call(
            "/topapi/v2/department/listsub",
            "department_listsub",
            {"dept_id": str(dept_id), "language": language},
        )
        return [
            Department(
                int(d["dept_id"]), str(d.get("name", "")), int(d.get("parent_id", dept_id)), dict(d)
            )
            for d in payload.get("result") or []
        ]

    def list_sub_department_ids(self, dept_id: int = 1) -> list[int]:
        payload = self._call(
            "/topapi/v2/department/listsubid", "department_listsubid", {"dept_id": str(dept_id)}
        )
        return [int(d) for d in (payload.get("result") or {}).get("dept_id_list", [])]

    def list_user_ids(self, dept_id: int) -> list[str]:
        payload = self._call("/topapi/user/listid", "user_listid", {"dept_id": str(dept_id)})
        return [str(u) for u in (payload.get("result") or {}).get("userid_list", [])]

    def list_users(
        self, dept_id: int, cursor: int = 0, size: int = 100, language: str = "zh_CN"
    ) -> UserPage:
        """One page of v2/user/list (direct members only); size 1..100."""
        if not 1 <= size <= 100:
            raise InvalidRequest("size must be between 1 and 100", api="user_list")
        payload = self._call(
            "/topapi/v2/user/list",
            "user_list",
            {
                "dept_id": str(dept_id),
                "cursor": str(cursor),
                "size": str(size),
                "language": language,
            },
        )
        result = payload.get("result") or {}
        next_cursor = result.get("next_cursor")
        return UserPage(
            users=[User.from_api(u) for u in result.get("list") or []],
            has_more=bool(result.get("has_more")),
            next_cursor=int(next_cursor) if next_cursor is not None else None,
        )

    def iter_users(self, dept_id: int, size: int = 100) -> Iterator[User]:
        """All direct members of a department, following the cursor."""
        cursor: int | None = 0
        while cursor is not None:
            page = self.list_users(dept_id, cursor, size)
            yield from page.users
            cursor = page.next_cursor if page.has_more else None

    def iter_department_ids(self, root: int = 1) -> Iterator[int]:
        """The root and every department below it, walking listsubid level by level."""
        pending = [root]
        while pending:
            dept_id = pending.pop(0)
            yield dept_id
            pending.extend(self.list_sub_department_ids(dept_id))

    def get_user(self, userid: str, language: str = "zh_CN") -> User:
        payload = self._call(
            "/topapi/v2/user/get", "user_get", {"userid": userid, "language": language}
        )
        return User.from_api(payload.get("result") or {})
