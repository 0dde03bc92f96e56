"""Shedding at the HTTP protocol: `newsrec serve` runs uvicorn with this httptools protocol, which answers a request
admission control refuses as soon as its headers are parsed, in the same event-loop callback that read them.

Through the ASGI middleware a shed costs an asyncio task, the scope and three middlewares before its 503 (0.17 ms
of CPU); at 5x C, sheds outnumber admitted requests four to one, so their cost comes out of the capacity left for
admitted work. Here a shed costs a dictionary lookup, the admission decision and one write. Admitted requests, and
every request when the app publishes no gates (or under another server), take the normal path. The gates are the
AdmissionControl instances the app publishes in its lifespan state under GATES_STATE_KEY (raw path -> gate): the
same counters and the same decision as the middleware's.
"""
from __future__ import annotations

import uuid

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.admission import GATES_STATE_KEY, AdmissionControl
from serving.logging_json import REQUEST_ID_HEADER, REQUEST_ID_OK

_STATUS_LINE = b"HTTP/1.1 503 Service Unavailable\r\n"


class _ShedCycle:
    """Stands in for the request's RequestResponseCycle once its 503 is written: uvicorn then drops the rest of the
    request (its body), and a next request on the connection starts normally."""

    response_complete = True
    disconnected = False
    keep_alive = True

    class message_event:  # noqa: N801 - uvicorn calls cycle.message_event.set() when the connection closes
        @staticmethod
        def set() -> None:
            pass


class FastShedProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        gates = self.app_state.get(GATES_STATE_KEY) if self.app_state else None
        # only between requests: a pipelined request's answer must not overtake the one still being served
        if gates and (self.cycle is None or self.cycle.response_complete) and not self.parser.should_upgrade():
            path = self.url.split(b"?", 1)[0]
            gate = gates.get(path)
            if gate is not None:
                reason = gate.decide(self.headers)
                if reason is not None:
                    self._shed(gate, reason, path)
                    return
        super().on_headers_complete()

    def _shed(self, gate: AdmissionControl, reason: str, path: bytes) -> None:
        headers, body = gate.shed_parts(reason)
        gate.fast_sheds += 1
        if gate.on_fast_shed is not None:
            gate.on_fast_shed(path.decode("ascii", "replace"))
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        request_id = next((v for n, v in self.headers if n == REQUEST_ID_HEADER and REQUEST_ID_OK.match(v)),
                          None) or uuid.uuid4().hex.encode()
        lines = [_STATUS_LINE, *(n + b": " + v + b"\r\n" for n, v in headers),
                 REQUEST_ID_HEADER + b": " + request_id + b"\r\n",
                 b"" if keep_alive else b"connection: close\r\n", b"\r\n", body]
        self.transport.write(b"".join(lines))
        self.cycle = _ShedCycle()  # type: ignore[assignment]
        self.server_state.total_requests += 1
        if not keep_alive:
            self.transport.close()
            return
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
