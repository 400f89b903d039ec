"""The simulator as a WSGI application (for any WSGI server or Django's test tooling)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from dingtalk.simulator.simulator import Simulator

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def wsgi_app(sim: Simulator) -> WsgiApp:
    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = str(environ["CONTENT_TYPE"])
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        response = sim.handle(
            str(environ.get("REQUEST_METHOD", "GET")),
            str(environ.get("PATH_INFO", "/")),
            query,
            headers,
            body,
            str(environ.get("REMOTE_ADDR", "127.0.0.1")),
        )
        if response.delay > 0:
            # WSGI has no way to answer later, so a held answer blocks this worker thread.
            time.sleep(response.delay)
        status = f"{response.status} {HTTPStatus(response.status).phrase}"
        start_response(status, [*response.headers, ("Content-Length", str(len(response.body)))])
        return [response.body]

    return application
