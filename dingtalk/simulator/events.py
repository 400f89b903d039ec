"""Directory-change events pushed over HTTP exactly like DingTalk's event push (§7.1).

The simulator changes its directory first, then POSTs
``<callback_url>?msg_signature=..&timestamp=..&nonce=..`` with the JSON body
``{"encrypt": "..."}``. The decrypted event is
``{"EventType": "user_add_org", "TimeStamp": "<ms>", "UserId": ["..."], "CorpId": "..."}``.
The receiver must answer within ``callback_timeout_s`` with the encrypted, signed
``success`` (``CallbackCrypto.encrypt_reply()``); anything else counts as a failed push.
"""

from __future__ import annotations

import enum
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit

from dingtalk.crypto import CallbackCrypto
from dingtalk.simulator.state import SimulatorState


class DirectoryEvent(enum.StrEnum):
    USER_ADD_ORG = "user_add_org"
    USER_MODIFY_ORG = "user_modify_org"
    USER_LEAVE_ORG = "user_leave_org"


DIRECTORY_EVENTS = tuple(event.value for event in DirectoryEvent)


def app_crypto(sim: SimulatorState, app_key: str) -> CallbackCrypto:
    config = sim.app(app_key).config
    return CallbackCrypto(config.callback_token, config.callback_aes_key, config.app_key)


def post_event(sim: SimulatorState, app_key: str, event: dict[str, Any]) -> dict[str, Any]:
    """Encrypt, sign and POST one event; returns a record of what happened."""
    state = sim.app(app_key)
    url = state.config.callback_url
    record: dict[str, Any] = {"app": app_key, "event": event, "url": url, "ok": False}
    if not url:
        record["error"] = "no callback URL configured"
    elif urlsplit(url).scheme not in ("http", "https"):
        record["error"] = "callback URL must be http(s)"
    else:
        crypto = app_crypto(sim, app_key)
        timestamp = str(int(sim.clock.now() * 1000))
        query, body = crypto.encrypt_request(event, timestamp=timestamp)
        separator = "&" if "?" in url else "?"
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            url + separator + urlencode(query),
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=sim.config.callback_timeout_s) as reply:  # noqa: S310
                record["status"] = reply.status
                content = reply.read()
            record["ok"] = crypto.check_reply(content)
            if not record["ok"]:
                record["error"] = "reply is not an encrypted, signed success (71009)"
        except urllib.error.HTTPError as exc:
            record["status"] = exc.code
            record["error"] = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
    with sim.lock:
        sim.events.append(record)
    return record


def apply_directory_change(
    sim: SimulatorState,
    app_key: str,
    event_type: str,
    userid: str | None = None,
    dept_id: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Change the simulated directory; returns the event to push."""
    if event_type not in DIRECTORY_EVENTS:
        raise ValueError(f"event_type must be one of {DIRECTORY_EVENTS}")
    with sim.lock:
        state = sim.app(app_key)
        directory = state.directory
        if event_type == DirectoryEvent.USER_ADD_ORG:
            if userid is not None:
                fields["userid"] = userid
            userid = directory.new_user(dept_id, **fields).userid
        elif userid is None:
            raise ValueError(f"{event_type} needs a userid")
        elif event_type == DirectoryEvent.USER_MODIFY_ORG:
            directory.modify_user(userid, **fields)
        else:
            directory.remove_user(userid)
        return {
            "EventType": event_type,
            "TimeStamp": str(int(sim.clock.now() * 1000)),
            "UserId": [userid],
            "CorpId": state.config.corp_id,
        }


def directory_event(
    sim: SimulatorState,
    app_key: str,
    event_type: str,
    userid: str | None = None,
    dept_id: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Apply a directory change, then push it (blocking). Returns the push record."""
    event = apply_directory_change(sim, app_key, event_type, userid, dept_id, **fields)
    record = post_event(sim, app_key, event)
    record["userid"] = event["UserId"][0]
    return record


class FollowEvent(enum.StrEnum):
    """The Service Window's follow events (§7.2): a citizen follows or leaves the account."""

    FOLLOW = "official_account_follow"
    UNFOLLOW = "official_account_unfollow"


def apply_follow(
    sim: SimulatorState, app_key: str, userid: str, follow: bool = True, name: str | None = None
) -> dict[str, Any]:
    """Add or remove a Service Window follower; returns the event to push.

    The event: ``{"EventType": "official_account_follow"|"official_account_unfollow",
    "TimeStamp": "<ms>", "UserId": ["..."], "UnionId": "<service account>", "CorpId": "..."}``
    (the reference lists these events but not their fields; this shape follows the directory
    events').
    """
    with sim.lock:
        state = sim.app(app_key)
        now = sim.clock.now()
        if follow:
            state.followers[userid] = (name or userid, now)
        else:
            state.followers.pop(userid, None)
        return {
            "EventType": FollowEvent.FOLLOW if follow else FollowEvent.UNFOLLOW,
            "TimeStamp": str(int(now * 1000)),
            "UserId": [userid],
            "UnionId": state.config.service_account_id,
            "CorpId": state.config.corp_id,
        }


def push_or_keep(sim: SimulatorState, app_key: str, event: dict[str, Any]) -> dict[str, Any]:
    """Push an event; one that fails is kept for ``get_call_back_failed_result`` (§7.1)."""
    record = post_event(sim, app_key, event)
    if not record["ok"]:
        with sim.lock:
            sim.app(app_key).failed_pushes.append(
                {
                    "call_back_tag": str(event["EventType"]),
                    "event_time": int(event["TimeStamp"]),
                    "event": event,
                }
            )
    return record


def follow_event(
    sim: SimulatorState, app_key: str, userid: str, follow: bool = True, name: str | None = None
) -> dict[str, Any]:
    """Follow or unfollow, then push the event (blocking). Returns the push record."""
    return push_or_keep(sim, app_key, apply_follow(sim, app_key, userid, follow, name))


def check_url(sim: SimulatorState, app_key: str) -> dict[str, Any]:
    """The registration handshake: push ``{"EventType": "check_url"}`` and check the reply."""
    return post_event(sim, app_key, {"EventType": "check_url"})
