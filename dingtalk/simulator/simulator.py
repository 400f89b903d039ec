"""The simulator: :class:`Simulator`, the one object servers, tests and demos hold.

``Simulator.handle(method, path, query, headers, body)`` takes one HTTP request and returns a
:class:`~dingtalk.simulator.wire.Response` (see :mod:`dingtalk.simulator.routing`); the
asyncio server, the WSGI app and the test helper are thin shells around it. The rest is the
Python control API. The state and the plain settings (``app``, ``task``, ``counters``,
``requests``, ``reset``, ``advance``, ``set_limits``...) come from
:class:`~dingtalk.simulator.state.SimulatorState`; the methods here hand over to the module
that owns each concern.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dingtalk.simulator import auth, events, faults, limits, recipients, routing
from dingtalk.simulator.config import FaultKind
from dingtalk.simulator.state import SimulatorState, Task
from dingtalk.simulator.wire import Response


class Simulator(SimulatorState):
    """DingTalk as documented, limits and silent drops included. See the package docstring."""

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        remote_ip: str = "127.0.0.1",
    ) -> Response:
        """Serve one HTTP request. ``headers`` keys are matched case-insensitively."""
        return routing.handle(self, method, path, query, headers, body, remote_ip)

    def inject(
        self,
        api: str = "*",
        kind: str = FaultKind.ERRCODE,
        *,
        errcode: int = -1,
        sub_code: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``api`` with a fault; see :func:`faults.inject`."""
        faults.inject(self, api, kind, errcode=errcode, sub_code=sub_code, times=times)

    def revoke_tokens(self, app_key: str | None = None, errcode: int = 40014) -> int:
        """Invalidate current tokens; the next call with one gets ``errcode`` (40001/40014/42001/88)."""
        return auth.revoke_tokens(self, app_key, errcode)

    def ban_ip(self, ip: str, seconds: float | None = None) -> None:
        limits.ban_ip(self, ip, seconds)

    def unban_ip(self, ip: str) -> None:
        limits.unban_ip(self, ip)

    def mark_read(self, task_id: int, userid: str, at: float | None = None) -> None:
        """Record that a simulated person opened a notice (at ``at``, default now)."""
        recipients.mark_read(self, task_id, userid, at)

    def read_at(self, task: Task, userid: str) -> float | None:
        """When ``userid`` reads ``task`` (simulated epoch seconds), or None for never."""
        return recipients.read_at(self, task, userid)

    def delivered_at(self, task: Task, userid: str) -> float:
        """When ``task`` reaches ``userid`` (simulated epoch seconds)."""
        return recipients.delivered_at(self, task, userid)

    def inbox(self, userid: str, app_key: str | None = None) -> list[dict[str, Any]]:
        """What one person's phone shows, newest first."""
        return recipients.inbox(self, userid, app_key)

    def recipients_with_messages(self, app_key: str | None = None, limit: int = 50) -> list[str]:
        return recipients.recipients_with_messages(self, app_key, limit)

    def directory_event(
        self,
        app_key: str,
        event_type: str,
        userid: str | None = None,
        dept_id: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Change the directory and push the event to the app's callback URL (blocking).

        Must not be called from the server thread: the receiver may call back into it.
        """
        return events.directory_event(self, app_key, event_type, userid, dept_id, **fields)

    def follow(
        self, app_key: str, userid: str, follow: bool = True, name: str | None = None
    ) -> dict[str, Any]:
        """Follow (or leave) the app's Service Window and push the event (blocking).

        A push that fails is kept for ``get_call_back_failed_result``.
        """
        return events.follow_event(self, app_key, userid, follow, name)

    def check_url(self, app_key: str) -> dict[str, Any]:
        """Push the check_url handshake and verify the encrypted ``success`` reply."""
        return events.check_url(self, app_key)
