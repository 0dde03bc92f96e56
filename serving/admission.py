"""Admission control: a pure ASGI middleware that bounds the requests in flight on the recommend path per worker
and sheds the excess before any work with a fast 503 + Retry-After, so admitted requests keep their latency."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFETCH_HEADER = b"x-prefetch"
# the app's lifespan state key under which it publishes {raw path: AdmissionControl} for serving.fast_shed
GATES_STATE_KEY = "newsrec_admission_gates"
REASONS = ("overloaded", "prefetch", "events")


class AdmissionControl:
    """Admit a request on `paths` only while fewer than `max_in_flight` are in flight (`prefetch_max_in_flight`
    for requests marked `X-Prefetch: 1`, so speculative work goes first); answer the rest 503 at once.

    One counter per worker process. The check and the increment happen with no await between them, so on one
    event loop no lock is needed. The decrement sits in a `finally`: an exception or a cancelled request (the
    client went away) never leaks a slot. `shed_total` (label `reason`: "overloaded" | "prefetch") counts sheds;
    `in_flight` reads the counter only when scraped. One instance per bounded path group: `reason` names the sheds
    of this group ("overloaded" for the recommend path, "events" for POST /v1/events, whose clicks are acknowledged
    only once on the broker, so a shed one was never acknowledged and the app's outbox sends it again).
    """

    def __init__(self, app: ASGIApp, max_in_flight: int, prefetch_max_in_flight: int, retry_after_s: int,
                 paths: tuple[str, ...] = ("/v1/recommend",), shed_total: Counter | None = None,
                 in_flight: Gauge | None = None, reason: str = "overloaded", target_lag_ms: float = 0.0,
                 limit: Gauge | None = None, min_in_flight: int = 1, lag_seconds: Histogram | None = None,
                 gates: dict[bytes, AdmissionControl] | None = None,
                 on_fast_shed: Callable[[str], None] | None = None, on_shed: Callable[[], None] | None = None
                 ) -> None:
        if max_in_flight < 1 or not 0 <= prefetch_max_in_flight <= max_in_flight:
            raise ValueError(f"need 1 <= max_in_flight ({max_in_flight}) and "
                             f"0 <= prefetch_max_in_flight ({prefetch_max_in_flight}) <= max_in_flight")
        if reason not in REASONS or reason == "prefetch":
            raise ValueError(f"reason must be one of {[r for r in REASONS if r != 'prefetch']}, got {reason!r}")
        if retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, got {retry_after_s}")
        if not 1 <= min_in_flight <= max_in_flight:
            raise ValueError(f"need 1 <= min_in_flight ({min_in_flight}) <= max_in_flight ({max_in_flight})")
        self.app, self.paths = app, frozenset(paths)
        self.max_in_flight, self.prefetch_max_in_flight = max_in_flight, prefetch_max_in_flight
        self.in_flight, self.reason = 0, reason
        # Adaptive bound (target_lag_ms > 0): the in-flight bound alone cannot see the requests still unread in the
        # sockets when the loop itself is behind (parsing and shedding cost CPU too: 5x the capacity offered to one
        # core kept it 1.0 core busy and every answer, shed or not, waited seconds). So the bound shrinks while the
        # event loop lags more than the target and grows back when it does not (AIMD, every LAG_TICK_S). It never
        # goes below `min_in_flight`: with that few requests in flight a late loop is not their doing (a hot swap's
        # load thread holding the GIL, a GC pass), and shedding them would fail requests without helping anyone.
        self.lag = LoopLag(target_lag_ms / 1e3, max_in_flight, min_in_flight, lag_seconds) \
            if target_lag_ms > 0 else None
        if limit is not None:
            limit.set_function(lambda: self.limit)
        self._shed_total = {r: shed_total.labels(r) for r in REASONS} if shed_total is not None else None
        if in_flight is not None:
            in_flight.set_function(lambda: self.in_flight)
        # Built once: shedding must cost next to nothing, it happens exactly when the CPU is scarce.
        self._shed_headers = [(b"content-type", b"application/json"),
                              (b"retry-after", str(retry_after_s).encode()),
                              (b"cache-control", b"no-store")]
        self._shed_bodies = {reason: json.dumps({"error": "overloaded", "detail": detail}).encode()
                             for reason, detail in (("overloaded", "server at capacity; retry after Retry-After"),
                                                    ("prefetch", "prefetch shed under load; fetch on demand"),
                                                    ("events", "events not accepted under load; send them again "
                                                               "after Retry-After"))}

        # serving.fast_shed sheds at the HTTP protocol, before any ASGI task: it finds this gate by raw path here
        if gates is not None:
            for path in paths:
                gates[path.encode()] = self
        self.on_fast_shed = on_fast_shed  # path -> count its 503: the protocol's sheds bypass the ASGI counters
        self.fast_sheds = 0
        self.on_shed = on_shed  # every shed of this gate, ASGI or protocol (serving.shed_window)

    def decide(self, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
        """The shed reason for a request with these (lower-case) headers now, or None to admit it."""
        prefetch = _is_prefetch(headers)
        limit = self.limit
        if prefetch:
            limit = limit * self.prefetch_max_in_flight // self.max_in_flight
        if self.in_flight >= limit:
            return "prefetch" if prefetch else self.reason
        return None

    def shed_parts(self, reason: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """Count a shed and return its 503's headers and body (built once per reason)."""
        if self._shed_total is not None:
            self._shed_total[reason].inc()
        if self.on_shed is not None:
            self.on_shed()
        body = self._shed_bodies[reason]
        return [*self._shed_headers, (b"content-length", str(len(body)).encode())], body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        reason = self.decide(scope["headers"])
        if reason is not None:
            headers, body = self.shed_parts(reason)
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    @property
    def limit(self) -> int:
        """The bound now: max_in_flight, or less while the loop lags (adaptive)."""
        if self.lag is None:
            return self.max_in_flight
        self.lag.watch()
        return self.lag.limit

def _is_prefetch(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == PREFETCH_HEADER:
            return value.strip() == b"1"
    return False


LAG_TICK_S = 0.01        # how often the loop's lag is sampled
DECREASE, INCREASE = 0.9, 0.1  # per lagging tick: x0.9; per tick on time: +0.1 (one slot per 100 ms)


class LoopLag:
    """Samples the event loop's lag with a chain of call_later callbacks (no task to cancel at shutdown) and keeps
    an AIMD bound between `floor` and `ceiling`: multiplied by DECREASE on a tick later than `target_s`, INCREASE
    added otherwise. Started by the first `watch()` on a running loop."""

    def __init__(self, target_s: float, ceiling: int, floor: int = 1, histogram: Histogram | None = None) -> None:
        self.target_s, self.ceiling, self.bound, self.last_lag_s = target_s, ceiling, float(ceiling), 0.0
        self.histogram = histogram  # every sample, for /metrics: how late the loop runs is what every request waits
        self.floor = float(max(1, min(floor, ceiling)))
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def limit(self) -> int:
        return max(1, int(self.bound + 1e-9))  # 1.0 + 10 x 0.1 is 10.999... in floats

    def watch(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first call, or a new loop (tests run several)
            self._loop = loop
            loop.call_later(LAG_TICK_S, self._tick, loop, loop.time() + LAG_TICK_S)

    def _tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if loop is not self._loop or loop.is_closed():
            return
        self.observe(loop.time() - due)
        loop.call_later(LAG_TICK_S, self._tick, loop, loop.time() + LAG_TICK_S)

    def observe(self, lag_s: float) -> None:
        self.last_lag_s = lag_s
        if self.histogram is not None:
            self.histogram.observe(max(lag_s, 0.0))
        if lag_s > self.target_s:
            self.bound = max(self.floor, self.bound * DECREASE)
        else:
            self.bound = min(float(self.ceiling), self.bound + INCREASE)
