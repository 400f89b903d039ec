"""A small asyncio HTTP/1.1 server for the simulator (keep-alive, pipelining, Content-Length).

One process and one event loop serve every connection; the simulator core is synchronous
and fast, so this beats a threaded ``http.server`` by a wide margin. Chunked request bodies
are not supported (answered with 411): DingTalk clients, including ``requests``, send
Content-Length.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from http import HTTPStatus
from urllib.parse import unquote

from dingtalk.simulator.simulator import Simulator
from dingtalk.simulator.wire import Response, parse_form

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
_REASONS = {status.value: status.phrase for status in HTTPStatus}


def _encode(response: Response, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    lines.append(f"Content-Length: {len(response.body)}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


class HttpProtocol(asyncio.Protocol):
    def __init__(self, sim: Simulator, connections: set[HttpProtocol]) -> None:
        self.sim = sim
        self.connections = connections
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.remote_ip = "127.0.0.1"
        self.waiting = False  # a held (delayed) answer is pending; keep request order
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - asyncio contract
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.remote_ip = str(peer[0])
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.waiting:
            self._process()

    def _fail(self, status: int, message: str) -> None:
        body = json.dumps({"errcode": 40035, "errmsg": message}).encode()
        self._send(Response(status, [("Content-Type", "application/json")], body), False)

    def _send(self, response: Response, keep_alive: bool) -> None:
        if self.transport is None or self.closed:
            return
        self.transport.write(_encode(response, keep_alive))
        if not keep_alive:
            self.transport.close()
            self.closed = True

    def _process(self) -> None:
        buffer = self.buffer
        while not self.closed:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    self._fail(431, "request head too large")
                return
            lines = buffer[:end].decode("latin-1").split("\r\n")
            request_line = lines[0].split(" ")
            if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
                self._fail(400, "malformed request line")
                return
            method, target, version = request_line
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    self._fail(400, "malformed header")
                    return
                headers[name.strip().lower()] = value.strip()
            if "transfer-encoding" in headers:
                self._fail(411, "chunked bodies are not supported; send Content-Length")
                return
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._fail(400, "bad Content-Length")
                return
            if not 0 <= length <= MAX_BODY_BYTES:
                self._fail(413, "body too large")
                return
            start = end + 4
            if len(buffer) < start + length:
                return
            body = bytes(buffer[start : start + length])
            del buffer[: start + length]
            path, _, query_string = target.partition("?")
            query = parse_form(query_string) if query_string else {}
            connection = headers.get("connection", "").lower()
            keep_alive = (
                connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
            )
            response = self.sim.handle(method, unquote(path), query, headers, body, self.remote_ip)
            if response.delay > 0:
                self.waiting = True
                asyncio.get_running_loop().call_later(
                    response.delay, self._finish_held, response, keep_alive
                )
                return
            self._send(response, keep_alive)

    def _finish_held(self, response: Response, keep_alive: bool) -> None:
        self.waiting = False
        self._send(response, keep_alive)
        if not self.closed:
            self._process()


class ServerThread:
    """Runs the asyncio server in a daemon thread; ``start()`` returns once it listens."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.connections: set[HttpProtocol] = set()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dingtalk-simulator", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._server = self.loop.run_until_complete(
                self.loop.create_server(
                    lambda: HttpProtocol(self.sim, self.connections),
                    self.host,
                    self.port,
                    reuse_address=True,
                )
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.close()
        self._server.close()
        self.loop.run_until_complete(self._server.wait_closed())
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


def serve_forever(sim: Simulator, host: str = "127.0.0.1", port: int = 8900) -> None:
    """Serve in the calling thread until interrupted (used by ``python -m dingtalk.simulator``)."""
    loop = asyncio.new_event_loop()
    connections: set[HttpProtocol] = set()
    server = loop.run_until_complete(
        loop.create_server(lambda: HttpProtocol(sim, connections), host, port, reuse_address=True)
    )
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()
