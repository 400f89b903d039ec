"""The rate governor: one budget shared by every worker, so DingTalk never drops anyone silently.

DingTalk's limits (dingtalk-api.md §2.2, §9) are per app and per egress IP, not per worker, and
most of them are *silent*: over the per-minute recipient budget the send still returns success
and the people over it are dropped (143103). So every metered call asks the governor first:

- calls per second per API per app (90018 otherwise);
- calls per 20 s from our egress IP (a 5-minute ban page otherwise);
- recipients per minute per app (silent 143103 otherwise);
- the month's metered-call quota per edition (90020 otherwise);
- a pause an app is under after DingTalk told one worker to slow down.

The store is Redis in production (one Lua script: atomic, and it reads Redis' own clock so all
workers share one) and the database on the embedded default. Either way the governor fails
closed: if its store cannot answer, :class:`GovernorUnavailable` is raised and sending pauses —
it never runs unmetered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Sum

from accounts.models import Department
from delivery.governor_state import RecordedApp, recorded_state
from delivery.models import GovernorCounter, GovernorEntry
from delivery.planning import RECIPIENTS_PER_MINUTE

logger = logging.getLogger("delivery.governor")

EDITION_QUOTAS = {"standard": 5_000, "professional": 200_000}


def edition_quota(edition: str) -> int:
    """Metered calls a month for a DingTalk edition (DELIVERY_EDITION_QUOTAS overrides)."""
    quotas: dict[str, int] = dict(
        getattr(settings, "DELIVERY_EDITION_QUOTAS", None) or EDITION_QUOTAS
    )
    return int(quotas.get(edition) or quotas.get("standard") or EDITION_QUOTAS["standard"])


# Calls DingTalk does not meter (dingtalk-api.md §9): token and directory APIs.
EXEMPT_APIS = frozenset(
    {
        "gettoken",
        "department_listsub",
        "department_listsubid",
        "user_listid",
        "user_list",
        "user_listsimple",
        "user_get",
    }
)
MONTH_TTL_S = 40 * 86400


class GovernorUnavailable(Exception):  # noqa: N818 - reads as a state, like the dingtalk errors
    """The governor's store did not answer: callers must stop sending (fail closed)."""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    wait_s: float = 0.0
    reason: str = "ok"


@dataclass(frozen=True, slots=True)
class Grant:
    """How many of the calls asked for may go now (a prefix); if not all, why and how long."""

    granted: int
    wait_s: float = 0.0
    reason: str = "ok"


def month_key(at: float | None = None) -> str:
    # DingTalk's months follow China Standard Time, like Hong Kong's (UTC+8).
    return time.strftime("%Y-%m", time.gmtime((time.time() if at is None else at) + 8 * 3600))


def content_fingerprint(msg: Mapping[str, Any]) -> str:
    """DingTalk drops the same content to the same person within a day: this names "the same"."""
    encoded = json.dumps(msg, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(encoded).hexdigest()


def _limits() -> dict[str, float]:
    return dict(settings.DELIVERY_LIMITS)


def time_scale() -> float:
    """Simulated seconds per real second: windows and receipt schedules follow a sped-up
    simulator clock (DELIVERY_GOVERNOR_TIME_SCALE, 1 in production)."""
    return max(float(getattr(settings, "DELIVERY_GOVERNOR_TIME_SCALE", 1.0)), 1e-9)


def department_app_key(department: Department) -> str:
    """The key a department's DingTalk app is counted under (its windows and month's calls)."""
    return department.dingtalk_app_key or f"department:{department.code}"


# Calls one governor decision may grant ahead: a grant not used (the group stopped early) is
# budget left unspent, never an overshoot.
GRANT_AHEAD = 20


def grant_ahead() -> int:
    """Calls one governor decision may grant ahead of sending them.

    A granted call reaches DingTalk a little after its grant. Under DingTalk's real limits
    (20 calls a second) two calls of margin are all there is, so each call is granted on its
    own; with generous limits a decision covers a twentieth of a second's calls.
    """
    calls_per_second = int(settings.DELIVERY_LIMITS["calls_per_second"])
    if calls_per_second < 100:
        return 1
    return min(GRANT_AHEAD, calls_per_second // 20)


def api_window_s(limits: Mapping[str, float], scale: float) -> float:
    """The calls-per-second window: DingTalk's second (scaled with a sped-up clock) plus
    ``call_window_margin_s`` real seconds, because a call reaches DingTalk a little after its
    grant and a late call must not land in the next second beside that second's own calls."""
    return 1.0 / scale + float(limits.get("call_window_margin_s", 0.0))


def urgent_reserve(limits: Mapping[str, float]) -> int:
    """People an urgent send may use above the bulk ceiling (``recipients_per_minute``).

    The ceiling sits below DingTalk's own 5,000 a minute; an urgent notice approved while bulk
    sends fill the ceiling takes this margin at once for its first calls instead of waiting for
    the window. DELIVERY_LIMITS' ``urgent_reserve``, never past DingTalk's limit, so bulk keeps
    the whole ceiling and no call, urgent or not, can push an app over DingTalk's minute.
    """
    margin = RECIPIENTS_PER_MINUTE - int(limits["recipients_per_minute"])
    return max(0, min(int(limits.get("urgent_reserve", 0)), margin))


class Governor(Protocol):
    def acquire(
        self, *, app_key: str, api: str, recipients: int = 0, edition: str = "standard"
    ) -> Decision: ...

    def acquire_many(
        self,
        *,
        app_key: str,
        api: str,
        recipients: Sequence[int],
        edition: str = "standard",
        urgent: bool | None = None,
        claims: Sequence[int] = (),
    ) -> Grant: ...

    def pause(self, *, app_key: str, seconds: float) -> None: ...

    def monthly_used(self, *, app_key: str) -> int: ...

    def waits(self) -> dict[str, tuple[int, float]]: ...

    def healthy(self) -> bool: ...


_REDIS_SCRIPT = """
-- Grant the longest prefix of the calls in ARGV[15..] (each call's recipients) that fits every
-- limit now; returns {granted, wait before the next call could go, the limit that stopped it}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local api_limit = tonumber(ARGV[1]); local api_window = tonumber(ARGV[2])
local ip_limit = tonumber(ARGV[3]); local ip_window = tonumber(ARGV[4])
local rpm_limit = tonumber(ARGV[5]); local rpm_window = tonumber(ARGV[6])
local month_limit = tonumber(ARGV[7]); local month_ttl = tonumber(ARGV[8])
local member = ARGV[9]; local metered = tonumber(ARGV[10])
local urgency = tonumber(ARGV[11]); local lease_s = tonumber(ARGV[12])
local first = 15
-- KEYS[9] / KEYS[10]: refusals and the seconds they asked callers to wait, per reason.
local function refuse(w, why)
  redis.call('HINCRBY', KEYS[9], why, 1)
  redis.call('HINCRBYFLOAT', KEYS[10], why, w)
  return {0, tostring(w), why}
end
-- Urgent work may use the margin between the bulk ceiling and DingTalk's minute (ARGV[13]).
if urgency == 1 then rpm_limit = rpm_limit + tonumber(ARGV[13]) end
local n = #ARGV - 14
-- KEYS[7], the epoch, is written only once the windows were rebuilt from the database: absent,
-- the store lost its state (a restart without persistence) and nothing may be granted.
if redis.call('EXISTS', KEYS[7]) == 0 then return {0, '0', 'state_lost'} end
-- ARGV[14]: the claimed batches asking (comma-separated ids). A rebuilt window holds each claimed
-- batch as if sent; one asking again had no call under way, so its stand-in leaves the window.
local claim_i = 0
for claim in string.gmatch(ARGV[14], '%d+') do
  claim_i = claim_i + 1
  local r = ARGV[first + claim_i - 1]
  if r and redis.call('ZREM', KEYS[4], 'claim-' .. claim .. ':' .. r) == 1 then
    redis.call('DECRBY', KEYS[6], tonumber(r))
  end
end
local pause = tonumber(redis.call('GET', KEYS[1]) or '0')
if pause > now then return refuse(pause - now, 'paused') end
-- KEYS[8]: while an urgent notice of this app sends, its bulk sends wait.
local urgent_until = tonumber(redis.call('GET', KEYS[8]) or '0')
if urgency == 0 and urgent_until > now then
  return refuse(urgent_until - now, 'urgent_first')
end
local granted = n
local wait = 0
local reason = 'ok'
local function cap(k, w, why)
  if k < granted then granted = k; wait = w; reason = why end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - api_window)
local api_used = redis.call('ZCARD', KEYS[2])
if api_used + n > api_limit then
  local k = math.max(api_limit - api_used, 0)
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  cap(k, oldest[2] and (tonumber(oldest[2]) + api_window - now) or api_window, 'calls_per_second')
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ip_window)
local ip_used = redis.call('ZCARD', KEYS[3])
if ip_used + n > ip_limit then
  local k = math.max(ip_limit - ip_used, 0)
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  cap(k, oldest[2] and (tonumber(oldest[2]) + ip_window - now) or ip_window, 'ip_calls')
end
-- KEYS[6] keeps the recipient window's running total, so a decision costs O(expired entries),
-- not O(window): members are 'uuid:recipients'.
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - rpm_window)
local used = tonumber(redis.call('GET', KEYS[6]) or '0')
if #expired > 0 then
  for i = 1, #expired do used = used - tonumber(string.match(expired[i], ':(%d+)$')) end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - rpm_window)
end
-- An empty window holds nothing, whatever a stale total says; a total never goes negative.
if used < 0 or redis.call('ZCARD', KEYS[4]) == 0 then used = 0 end
-- Stored now, refused or not: the entries just trimmed must leave the total with them.
redis.call('SET', KEYS[6], used, 'EX', math.ceil(rpm_window) + 1)
local total = 0
for i = 1, n do
  local r = tonumber(ARGV[first + i - 1])
  if r > 0 and used + total + r > rpm_limit then
    local freed = 0
    local w = rpm_window
    local entries = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
    for j = 1, #entries, 2 do
      freed = freed + tonumber(string.match(entries[j], ':(%d+)$'))
      if used + total - freed + r <= rpm_limit then
        w = tonumber(entries[j + 1]) + rpm_window - now
        break
      end
    end
    cap(i - 1, w, 'recipients_per_minute')
    break
  end
  total = total + r
end
if metered == 1 and month_limit > 0 then
  local month_used = tonumber(redis.call('GET', KEYS[5]) or '0')
  if month_used + granted > month_limit then
    cap(math.max(month_limit - month_used, 0), 3600, 'monthly_quota')
  end
end
local window_wait = reason == 'recipients_per_minute' or reason == 'calls_per_second'
  or reason == 'ip_calls'
if urgency == 1 and (granted > 0 or window_wait) then
  -- Held while this urgent call waits for budget that comes back, and a little after it goes
  -- (not for a month's quota: bulk sends meet the same refusal by themselves).
  local lease = now + lease_s
  if window_wait then lease = lease + math.max(wait, 0) end
  if lease > urgent_until then
    redis.call('SET', KEYS[8], tostring(lease), 'PX', math.ceil((lease - now) * 1000) + 1)
  end
end
if granted == 0 then return refuse(math.max(wait, 0), reason) end
total = 0
for i = 1, granted do
  total = total + tonumber(ARGV[first + i - 1])
  redis.call('ZADD', KEYS[2], now, member .. ':' .. i)
  redis.call('ZADD', KEYS[3], now, member .. ':' .. i)
end
redis.call('EXPIRE', KEYS[2], math.ceil(api_window) + 1)
redis.call('EXPIRE', KEYS[3], math.ceil(ip_window) + 1)
if total > 0 then
  redis.call('ZADD', KEYS[4], now, member .. ':' .. total)
  used = used + total
end
redis.call('SET', KEYS[6], used, 'EX', math.ceil(rpm_window) + 1)
redis.call('EXPIRE', KEYS[4], math.ceil(rpm_window) + 1)
if metered == 1 then
  redis.call('INCRBY', KEYS[5], granted)
  redis.call('EXPIRE', KEYS[5], month_ttl)
end
return {granted, tostring(math.max(wait, 0)), reason}
"""


# How long after an urgent notice's last call (or past its wait for budget) the app's bulk
# sends still wait: the urgent notice's next call comes within it. Real seconds, not scaled
# with a sped-up clock: the gap between two send tasks is the workers', not DingTalk's.
URGENT_LEASE_S = 2.0
# Refusals whose budget comes back by itself: an urgent send waiting on one keeps bulk waiting.
WINDOW_REASONS = frozenset({"recipients_per_minute", "calls_per_second", "ip_calls"})
# How long a caller waits while another process rebuilds the governor's lost windows.
REBUILD_WAIT_S = 0.5


class RedisGovernor:
    """Token windows in Redis: one Lua script per decision, on Redis' clock."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._redis.register_script(_REDIS_SCRIPT)
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.prefix = prefix

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def acquire(
        self, *, app_key: str, api: str, recipients: int = 0, edition: str = "standard"
    ) -> Decision:
        grant = self.acquire_many(
            app_key=app_key, api=api, recipients=[recipients], edition=edition
        )
        return Decision(grant.granted == 1, grant.wait_s, grant.reason)

    def acquire_many(
        self,
        *,
        app_key: str,
        api: str,
        recipients: Sequence[int],
        edition: str = "standard",
        urgent: bool | None = None,
        claims: Sequence[int] = (),
    ) -> Grant:
        """Grant a prefix of these calls. ``urgent`` True: an urgent notice's sends, which hold
        the app's budget for themselves while they wait and send; False: bulk sends, which wait
        meanwhile; None (receipts, uploads): neither. ``claims``: the claimed batches making
        these calls, in order (a rebuilt window's stand-ins for them leave it)."""
        limits, scale = _limits(), time_scale()
        metered = api not in EXEMPT_APIS
        keys = [
            self._key("pause", app_key),
            self._key("api", app_key, api),
            self._key("ip"),
            self._key("rpm", app_key),
            self._key("month", app_key, month_key()),
            self._key("rpm-total", app_key),
            self._key("epoch"),
            self._key("urgent", app_key),
            self._key("waits"),
            self._key("waits-s"),
        ]
        args: list[str | int | float] = [
            int(limits["calls_per_second"]),
            api_window_s(limits, scale),
            int(limits["ip_calls_per_window"]),
            limits["ip_window_s"] / scale,
            int(limits["recipients_per_minute"]),
            limits["recipients_window_s"] / scale,
            edition_quota(edition),
            MONTH_TTL_S,
            uuid.uuid4().hex,
            1 if metered else 0,
            -1 if urgent is None else int(urgent),
            URGENT_LEASE_S,
            urgent_reserve(limits),
            ",".join(str(int(c)) for c in claims),
            *(max(0, int(r)) for r in recipients),
        ]
        for _attempt in range(2):
            try:
                granted, wait, reason = self._script(keys=keys, args=args)
            except self._errors as exc:
                raise GovernorUnavailable(
                    f"rate governor store unavailable: {type(exc).__name__}"
                ) from None
            reason_text = reason.decode() if isinstance(reason, bytes) else str(reason)
            if reason_text != "state_lost":
                return Grant(int(granted), max(0.0, float(wait)), reason_text)
            if not self.restore():
                # Another worker is rebuilding the windows: nothing goes out meanwhile.
                return Grant(0, REBUILD_WAIT_S, "rebuilding")
        return Grant(0, REBUILD_WAIT_S, "rebuilding")

    def restore(self) -> bool:
        """Rebuild every window and month counter from the database, then write the epoch.

        Only one process rebuilds (a short lock); the others are told to wait. False when
        this process did not (or could not) rebuild; GovernorUnavailable when the store or
        the database does not answer.
        """
        lock = self._key("rebuild-lock")
        try:
            if self._redis.exists(self._key("epoch")):
                return True
            if not self._redis.set(lock, "1", nx=True, ex=30):
                return False
            try:
                seconds, micros = self._redis.time()
                redis_now = seconds + micros / 1_000_000
                try:
                    limits, scale = _limits(), time_scale()
                    state = recorded_state(
                        time.time(),
                        horizon_s=max(limits["recipients_window_s"], limits["ip_window_s"]) / scale,
                        app_key_of=department_app_key,
                    )
                except DatabaseError as exc:
                    raise GovernorUnavailable(
                        f"rate governor cannot rebuild its windows: {type(exc).__name__}"
                    ) from None
                self._write_state(state, redis_now - time.time())
            finally:
                self._redis.delete(lock)
        except self._errors as exc:
            raise GovernorUnavailable(
                f"rate governor store unavailable: {type(exc).__name__}"
            ) from None
        logger.warning(
            "governor: store had lost its state; rebuilt %s apps from the database", len(state)
        )
        return True

    def _write_state(self, state: dict[str, RecordedApp], offset: float) -> None:
        """Write rebuilt windows (shifted onto Redis' clock by ``offset``) and the epoch."""
        limits, scale = _limits(), time_scale()
        pipe = self._redis.pipeline(transaction=True)
        ip_key = self._key("ip")
        for app_key, app in state.items():
            api_key = self._key("api", app_key, "asyncsend_v2")
            rpm_key = self._key("rpm", app_key)
            for i, (at, size, claim) in enumerate(app.calls):
                member = f"claim-{claim}" if claim else f"rebuilt-{app_key}-{i}"
                pipe.zadd(api_key, {f"{member}:1": at + offset})
                pipe.zadd(ip_key, {f"{member}:1": at + offset})
                if size > 0:
                    pipe.zadd(rpm_key, {f"{member}:{size}": at + offset})
            pipe.set(
                self._key("rpm-total", app_key),
                sum(size for _at, size, _claim in app.calls),
                ex=math.ceil(limits["recipients_window_s"] / scale) + 1,
            )
            for key, window in (
                (api_key, api_window_s(limits, scale)),
                (rpm_key, limits["recipients_window_s"] / scale),
            ):
                pipe.expire(key, math.ceil(window) + 1)
            month = self._key("month", app_key, month_key())
            pipe.set(month, app.month_calls, ex=MONTH_TTL_S, nx=True)
            # A counter that survived (or was written meanwhile) keeps the larger count.
            pipe.eval(
                "local v = tonumber(redis.call('GET', KEYS[1]) or '0') "
                "if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end",
                1,
                month,
                app.month_calls,
                MONTH_TTL_S,
            )
        pipe.expire(ip_key, math.ceil(limits["ip_window_s"] / scale) + 1)
        pipe.set(self._key("epoch"), uuid.uuid4().hex)
        pipe.execute()

    def pause(self, *, app_key: str, seconds: float) -> None:
        try:
            now = self._redis.time()
            until = now[0] + now[1] / 1_000_000 + seconds / time_scale()
            self._redis.set(
                self._key("pause", app_key), str(until), ex=int(seconds / time_scale()) + 2
            )
        except self._errors as exc:
            raise GovernorUnavailable(
                f"rate governor store unavailable: {type(exc).__name__}"
            ) from None

    def monthly_used(self, *, app_key: str) -> int:
        try:
            if not self._redis.exists(self._key("epoch")) and not self.restore():
                raise GovernorUnavailable("rate governor is rebuilding its windows")
            value = self._redis.get(self._key("month", app_key, month_key()))
        except self._errors as exc:
            raise GovernorUnavailable(
                f"rate governor store unavailable: {type(exc).__name__}"
            ) from None
        return int(value or 0)

    def waits(self) -> dict[str, tuple[int, float]]:
        """Refusals since the store started and the seconds they asked for, per reason."""
        try:
            counts = self._redis.hgetall(self._key("waits"))
            seconds = self._redis.hgetall(self._key("waits-s"))
        except self._errors as exc:
            raise GovernorUnavailable(
                f"rate governor store unavailable: {type(exc).__name__}"
            ) from None
        return {
            (reason.decode() if isinstance(reason, bytes) else str(reason)): (
                int(count),
                float(seconds.get(reason, 0)),
            )
            for reason, count in counts.items()
        }

    def healthy(self) -> bool:
        try:
            return bool(self._redis.ping())
        except self._errors:
            return False

    def reset(self) -> None:
        """Forget every window and counter under this prefix (tests and benchmarks)."""
        for key in self._redis.scan_iter(match=self.prefix + "*", count=1000):
            self._redis.delete(key)


class DatabaseGovernor:
    """The same windows as rows, for the embedded default (SQLite) or a Redis-less install.

    Each decision runs in one transaction that first locks the app's counter row, so two
    workers deciding for the same app are serialised (SQLite serialises all writers anyway).
    """

    def acquire(
        self,
        *,
        app_key: str,
        api: str,
        recipients: int = 0,
        edition: str = "standard",
        urgent: bool | None = None,
    ) -> Decision:
        limits, scale = _limits(), time_scale()
        metered = api not in EXEMPT_APIS
        try:
            with transaction.atomic():
                now = time.time()
                lock, _ = GovernorCounter.objects.select_for_update().get_or_create(
                    key=f"lock:{app_key}", defaults={"value": 0}
                )
                pause = GovernorCounter.objects.filter(key=f"pause:{app_key}").first()
                if pause is not None and pause.until > now:
                    return Decision(False, pause.until - now, "paused")
                horizon = now - max(limits["recipients_window_s"], limits["ip_window_s"]) / scale
                GovernorEntry.objects.filter(at__lt=horizon - 1).delete()
                api_window = api_window_s(limits, scale)
                recent = GovernorEntry.objects.filter(
                    key=f"api:{app_key}:{api}", at__gt=now - api_window
                )
                if recent.count() >= limits["calls_per_second"]:
                    oldest = min(recent.values_list("at", flat=True))
                    return Decision(False, oldest + api_window - now, "calls_per_second")
                ip_window = limits["ip_window_s"] / scale
                ip_recent = GovernorEntry.objects.filter(key="ip", at__gt=now - ip_window)
                if ip_recent.count() >= limits["ip_calls_per_window"]:
                    oldest = min(ip_recent.values_list("at", flat=True))
                    return Decision(False, oldest + ip_window - now, "ip_calls")
                if recipients > 0:
                    rpm_window = limits["recipients_window_s"] / scale
                    window = GovernorEntry.objects.filter(
                        key=f"rpm:{app_key}", at__gt=now - rpm_window
                    )
                    used = window.aggregate(total=Sum("amount"))["total"] or 0
                    limit = limits["recipients_per_minute"]
                    if urgent is True:
                        # Urgent work may use the margin up to DingTalk's own minute.
                        limit += urgent_reserve(limits)
                    if used + recipients > limit:
                        freed, wait = 0, rpm_window
                        for at, amount in window.order_by("at").values_list("at", "amount"):
                            freed += amount
                            if used - freed + recipients <= limit:
                                wait = at + rpm_window - now
                                break
                        return Decision(False, max(wait, 0.0), "recipients_per_minute")
                month = f"month:{app_key}:{month_key(now)}"
                if metered:
                    counter, _ = GovernorCounter.objects.select_for_update().get_or_create(
                        key=month, defaults={"value": 0}
                    )
                    if counter.value >= edition_quota(edition):
                        return Decision(False, 3600.0, "monthly_quota")
                    counter.value += 1
                    counter.save(update_fields=["value"])
                entries = [
                    GovernorEntry(key=f"api:{app_key}:{api}", at=now, amount=1),
                    GovernorEntry(key="ip", at=now, amount=1),
                ]
                if recipients > 0:
                    entries.append(GovernorEntry(key=f"rpm:{app_key}", at=now, amount=recipients))
                GovernorEntry.objects.bulk_create(entries)
                lock.value += 1
                lock.save(update_fields=["value"])
                return Decision(True)
        except DatabaseError as exc:
            raise GovernorUnavailable(
                f"rate governor store unavailable: {type(exc).__name__}"
            ) from None

    def acquire_many(
        self,
        *,
        app_key: str,
        api: str,
        recipients: Sequence[int],
        edition: str = "standard",
        urgent: bool | None = None,
        claims: Sequence[int] = (),
    ) -> Grant:
        """One decision per call (each its own short transaction), up to the first refusal."""
        if urgent is False:
            held = self._urgent_lease(app_key, False, 0.0)
            if held > 0:
                return self._refused(Grant(0, held, "urgent_first"))
        granted = 0
        for count in recipients:
            decision = self.acquire(
                app_key=app_key, api=api, recipients=count, edition=edition, urgent=urgent
            )
            if not decision.allowed:
                window_wait = decision.reason in WINDOW_REASONS
                if urgent and (granted or window_wait):
                    self._urgent_lease(app_key, True, decision.wait_s if window_wait else 0.0)
                grant = Grant(granted, decision.wait_s, decision.reason)
                return self._refused(grant) if not granted else grant
            granted += 1
        if urgent:
            self._urgent_lease(app_key, True, 0.0)
        return Grant(granted)

    def _refused(self, grant: Grant) -> Grant:
        """Tally a refusal: a row per reason, ``value`` refusals and ``until`` their seconds."""
        try:
            key = f"waits:{grant.reason}"
            GovernorCounter.objects.get_or_create(key=key, defaults={"value": 0})
            GovernorCounter.objects.filter(key=key).update(
                value=F("value") + 1, until=F("until") + grant.wait_s
            )
        except DatabaseError as exc:
            raise GovernorUnavailable(
                f"rate governor store unavailable: {type(exc).__name__}"
            ) from None
        return grant

    def waits(self) -> dict[str, tuple[int, float]]:
        """Refusals and the seconds they asked for, per reason."""
        try:
            rows = list(
                GovernorCounter.objects.filter(key__startswith="waits:").values_list(
                    "key", "value", "until"
                )
            )
        except DatabaseError as exc:
            raise GovernorUnavailable(
                f"rate governor store unavailable: {type(exc).__name__}"
            ) from None
        return {key.split(":", 1)[1]: (int(value), float(until)) for key, value, until in rows}

    def _urgent_lease(self, app_key: str, urgent: bool, wait_s: float) -> float:
        """Urgent: extend the app's urgent lease past ``wait_s``; bulk: how long it still runs."""
        key = f"urgent:{app_key}"
        try:
            now = time.time()
            if urgent:
                until = now + wait_s + URGENT_LEASE_S
                _row, created = GovernorCounter.objects.get_or_create(
                    key=key, defaults={"until": until}
                )
                if not created:
                    GovernorCounter.objects.filter(key=key, until__lt=until).update(until=until)
                return 0.0
            current = GovernorCounter.objects.filter(key=key).first()
        except DatabaseError as exc:
            raise GovernorUnavailable(
                f"rate governor store unavailable: {type(exc).__name__}"
            ) from None
        return max(0.0, current.until - now) if current is not None else 0.0

    def pause(self, *, app_key: str, seconds: float) -> None:

        try:
            GovernorCounter.objects.update_or_create(
                key=f"pause:{app_key}", defaults={"until": time.time() + seconds / time_scale()}
            )
        except DatabaseError as exc:
            raise GovernorUnavailable(
                f"rate governor store unavailable: {type(exc).__name__}"
            ) from None

    def monthly_used(self, *, app_key: str) -> int:

        try:
            row = GovernorCounter.objects.filter(key=f"month:{app_key}:{month_key()}").first()
        except DatabaseError as exc:
            raise GovernorUnavailable(
                f"rate governor store unavailable: {type(exc).__name__}"
            ) from None
        return row.value if row is not None else 0

    def healthy(self) -> bool:

        try:
            GovernorCounter.objects.exists()
        except DatabaseError:
            return False
        return True

    def reset(self) -> None:

        GovernorEntry.objects.all().delete()
        GovernorCounter.objects.all().delete()


_lock = threading.Lock()
_instances: dict[tuple[str, str], Governor] = {}


def governor_url() -> str:
    url = str(getattr(settings, "DELIVERY_GOVERNOR_URL", "") or "")
    if url:
        return url
    broker = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    return broker if broker.startswith(("redis://", "rediss://")) else "db"


def get_governor() -> Governor:
    """The process's governor for the configured store (Redis or the database)."""
    url = governor_url()
    prefix = str(settings.DELIVERY_GOVERNOR_PREFIX)
    with _lock:
        instance = _instances.get((url, prefix))
        if instance is None:
            instance = DatabaseGovernor() if url == "db" else RedisGovernor(url, prefix)
            _instances[(url, prefix)] = instance
        return instance
