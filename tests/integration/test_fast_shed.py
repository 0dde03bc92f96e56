"""serving.fast_shed under a real uvicorn on 127.0.0.1, over raw sockets: a request admission control refuses is
answered by the protocol itself (no ASGI call), with Retry-After and the request id; the connection stays usable
after it (also when the shed request had a body); `Connection: close` closes it; ungated paths are untouched."""
from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from newsrec.services import free_port
from serving.admission import GATES_STATE_KEY, AdmissionControl
from serving.fast_shed import FastShedProtocol


class HeldApp:
    """GET /v1/recommend?hold=1 waits until GET /release; counts the requests that reached the app."""

    def __init__(self) -> None:
        self.calls, self.release = 0, None
        self.gates: dict = {}
        self.counted: list[str] = []

    def build(self) -> Starlette:
        async def recommend(request):
            self.calls += 1
            if request.query_params.get("hold") == "1":
                self.release = self.release or asyncio.Event()
                await self.release.wait()
            return JSONResponse({"ok": True})

        async def release(request):
            self.release = self.release or asyncio.Event()
            self.release.set()
            return JSONResponse({"released": True})

        @contextlib.asynccontextmanager
        async def lifespan(app):
            yield {GATES_STATE_KEY: self.gates}

        app = Starlette(routes=[Route("/v1/recommend", recommend, methods=["GET", "POST"]),
                                Route("/release", release)], lifespan=lifespan)
        app.add_middleware(AdmissionControl, max_in_flight=1, prefetch_max_in_flight=1, retry_after_s=2,
                           gates=self.gates, on_fast_shed=self.counted.append)
        return app


@pytest.fixture
def server():
    held, port = HeldApp(), free_port()
    srv = uvicorn.Server(uvicorn.Config(held.build(), host="127.0.0.1", port=port, http=FastShedProtocol,
                                        log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield held, port
    srv.should_exit = True
    thread.join(timeout=10)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, "connection closed before a response"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    need = int(headers.get("content-length", 0))
    while len(rest) < need:
        rest += s.recv(4096)
    return int(lines[0].split()[1]), headers, rest[:need]


def _get(s: socket.socket, path: str, extra: str = "") -> None:
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())


def _hold_one(held: HeldApp, port: int) -> socket.socket:
    """A request held in the app: the bound (1) is reached."""
    holder = _connect(port)
    _get(holder, "/v1/recommend?hold=1")
    deadline = time.monotonic() + 5
    while held.calls < 1:
        assert time.monotonic() < deadline, "the held request never reached the app"
        time.sleep(0.01)
    return holder


def test_a_refused_request_is_answered_by_the_protocol_and_the_connection_stays_usable(server):
    held, port = server
    holder = _hold_one(held, port)
    gate = held.gates[b"/v1/recommend"]

    c = _connect(port)
    _get(c, "/v1/recommend?user_id=U1", "X-Request-Id: client-7\r\n")
    status, headers, body = _read_response(c)
    assert status == 503 and headers["retry-after"] == "2" and headers["x-request-id"] == "client-7"
    assert json.loads(body)["error"] == "overloaded"
    assert gate.fast_sheds == 1 and held.calls == 1 and held.counted == ["/v1/recommend"]

    # a refused request with a body: its body is dropped, the next request on the connection is read afresh
    c.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n" + b"x" * 300)
    status, headers, _ = _read_response(c)
    assert status == 503 and len(headers["x-request-id"]) == 32 and gate.fast_sheds == 2

    release = _connect(port)
    _get(release, "/release")
    assert _read_response(release)[0] == 200
    assert _read_response(holder)[0] == 200       # the held one completes
    _get(c, "/v1/recommend")                      # the same connection, after two sheds
    assert _read_response(c)[0] == 200 and held.calls == 2  # the sheds never reached the app


def test_connection_close_is_honoured_and_ungated_paths_are_left_alone(server):
    held, port = server
    holder = _hold_one(held, port)
    c = _connect(port)
    _get(c, "/v1/recommend", "Connection: close\r\n")
    status, headers, _ = _read_response(c)
    assert status == 503 and headers["connection"] == "close"
    assert c.recv(100) == b""                     # closed by the server
    other = _connect(port)
    _get(other, "/release")                       # no gate on this path: served while the bound is reached
    assert _read_response(other)[0] == 200
    assert _read_response(holder)[0] == 200
