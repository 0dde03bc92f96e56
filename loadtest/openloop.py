"""An open-loop HTTP load generator: Poisson arrivals at a fixed offered rate, so a slow server is measured as
slow (queueing shows in latency) instead of being offered less load, which closed-loop tools do.

Lean on purpose, because it shares the machine's two cores with the server it measures: HTTP/1.1 keep-alive
connections on raw asyncio protocols (uvloop), request bytes built before the clock starts, responses parsed
only for status, length and the `source` field. It costs ~0.1 ms of CPU per request (httpx: ~1 ms). Latency is
taken from each request's scheduled send time, so time spent waiting for a free connection counts.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
import uvloop

SOURCE_FIELD = b'"source":"'
CONNECT_SPACING_S = 0.005


@dataclass(frozen=True)
class StepResult:
    offered_rps: float
    achieved_rps: float
    ok: int
    errors: int          # transport failures, timeouts and non-200 answers other than 503
    shed: int            # 503 answers (admission control turned the request away)
    p50_ms: float
    p99_ms: float
    max_ms: float
    sources: dict[str, int]
    client_cpu_ms_per_request: float  # this generator's own CPU (it competes with the server for the cores)
    stage_ms: dict[str, float]        # mean of the answers' own per-stage timings (a sample of them)

    def to_json(self) -> dict:
        return self.__dict__.copy()


class _Tally:
    def __init__(self, sample_every: int, log: list | None = None) -> None:
        self.sample_every, self.answers, self.log = sample_every, 0, log  # log: (scheduled, status, ms) per request
        self.stage_sums: collections.Counter = collections.Counter()
        self.stage_counts: collections.Counter = collections.Counter()
        self.latencies_ms: list[float] = []
        self.sources: collections.Counter = collections.Counter()
        self.errors = self.shed = 0
        self.outstanding = 0
        self.drained = asyncio.Event()

    def done(self, scheduled: float, status: int, body: bytes) -> None:
        self.outstanding -= 1
        if self.log is not None:
            self.log.append((scheduled, status, (time.perf_counter() - scheduled) * 1e3))
        if status == 200:
            self.latencies_ms.append((time.perf_counter() - scheduled) * 1e3)
            at = body.find(SOURCE_FIELD)
            if at >= 0:
                start = at + len(SOURCE_FIELD)
                self.sources[body[start:body.find(b'"', start)].decode()] += 1
            self.answers += 1
            if self.answers % self.sample_every == 0:  # parsing every body would cost the server CPU
                for stage, ms in json.loads(body).get("timings_ms", {}).items():
                    self.stage_sums[stage] += ms
                    self.stage_counts[stage] += 1
        elif status == 503:
            self.shed += 1
        else:
            self.errors += 1
        if self.outstanding == 0:
            self.drained.set()


def _content_length(head: bytes) -> int:
    head = head.lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17:end if end > 0 else None])


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time; tells the pool when it is free again."""

    def __init__(self, pool: _Pool):
        self.pool, self.transport, self.buf = pool, None, bytearray()
        self.scheduled: float | None = None
        self.need = self.body_at = -1  # response size and body offset, once its header is parsed

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.pool.all.add(self)

    def send(self, request: bytes, scheduled: float) -> None:
        # the clock starts at the scheduled time (a late send, waiting for the loop or a connection, is latency),
        # or at the send if the loop woke a little early (uvloop's timers have 1 ms resolution): counted from the
        # later scheduled time, a fast answer came out shorter than it was, even negative
        self.scheduled = min(scheduled, time.perf_counter())
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.scheduled is not None:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                self.body_at = end + 4
                self.need = self.body_at + _content_length(bytes(self.buf[:end]))
            if len(self.buf) < self.need:
                return
            status, body = int(self.buf[9:12]), bytes(self.buf[self.body_at:self.need])
            del self.buf[:self.need]
            scheduled, self.scheduled, self.need = self.scheduled, None, -1
            self.pool.finished(self, scheduled, status, body)

    def connection_lost(self, exc) -> None:
        self.pool.lost(self)


class _Pool:
    """Idle connections, and requests waiting for one (they keep their scheduled time: waiting is latency)."""

    def __init__(self, host: str, port: int, max_connections: int, tally: _Tally):
        self.host, self.port, self.max, self.tally = host, port, max_connections, tally
        self.idle: collections.deque[_Connection] = collections.deque()
        self.waiting: collections.deque[tuple[bytes, float]] = collections.deque()
        self.size = 0
        self.all: set[_Connection] = set()

    async def open(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
            self.size += 1
            self.idle.append(conn)
            # spaced, as readers arrive: opened back to back they queue at the listening socket and the first
            # uvicorn worker to wake accepts them all (measured: 15 of 16 on one of two workers)
            await asyncio.sleep(CONNECT_SPACING_S)

    def submit(self, request: bytes, scheduled: float) -> None:
        self.tally.outstanding += 1
        if self.idle:
            # the least recently used connection: requests spread over all open connections, as many readers'
            # would. Reusing the last one (LIFO) sent ~95% of 100 req/s to one of two uvicorn workers (a
            # connection stays with the worker that accepted it) while the other idled: one worker's queueing.
            self.idle.popleft().send(request, scheduled)
            return
        self.waiting.append((request, scheduled))
        if self.size < self.max:  # grow in the background; the request goes out on the first free connection
            self.size += 1
            asyncio.ensure_future(self._grow())

    async def _grow(self) -> None:
        try:
            _, conn = await asyncio.get_running_loop().create_connection(lambda: _Connection(self), self.host,
                                                                         self.port)
        except OSError:
            self.size -= 1
            if self.waiting:
                _, scheduled = self.waiting.popleft()
                self.tally.done(scheduled, 0, b"")
            return
        self._next(conn)

    def _next(self, conn: _Connection) -> None:
        if self.waiting:
            conn.send(*self.waiting.popleft())
        else:
            self.idle.append(conn)

    def finished(self, conn: _Connection, scheduled: float, status: int, body: bytes) -> None:
        self.tally.done(scheduled, status, body)
        self._next(conn)

    def lost(self, conn: _Connection) -> None:
        self.size -= 1
        self.all.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.scheduled is not None:
            self.tally.done(conn.scheduled, 0, b"")

    def close(self) -> None:
        """Close every connection, busy ones too (past the drain timeout), so the server stops its work for them."""
        for conn in list(self.all):
            conn.scheduled = None  # not an error of the next step: this step is over
            conn.transport.close()


async def _run(base_url: str, paths: list[bytes], starts: np.ndarray, rps: float, max_in_flight: int,
               timeout_s: float, sample_every: int, log: list | None = None) -> StepResult:
    url = urlsplit(base_url)
    tally = _Tally(sample_every, log)
    pool = _Pool(url.hostname, url.port or 80, max_in_flight, tally)
    await pool.open(min(max_in_flight, 16))
    host = f"{url.hostname}:{url.port}".encode()
    requests = [b"GET " + p + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n" for p in paths]
    cpu0 = time.process_time()
    t0 = time.perf_counter() + 0.01
    for at, request in zip(starts, requests):
        scheduled = t0 + at
        delay = scheduled - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        pool.submit(request, scheduled)
    if tally.outstanding:
        try:
            await asyncio.wait_for(tally.drained.wait(), timeout_s)
        except TimeoutError:
            tally.errors += tally.outstanding
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    pool.close()
    lat = np.array(tally.latencies_ms) if tally.latencies_ms else np.array([np.nan])
    n = len(tally.latencies_ms)
    return StepResult(offered_rps=rps, achieved_rps=n / elapsed, ok=n, errors=tally.errors, shed=tally.shed,
                      p50_ms=float(np.nanpercentile(lat, 50)), p99_ms=float(np.nanpercentile(lat, 99)),
                      max_ms=float(np.nanmax(lat)), sources=dict(tally.sources),
                      client_cpu_ms_per_request=1e3 * cpu / max(len(paths), 1),
                      stage_ms={k: tally.stage_sums[k] / tally.stage_counts[k] for k in tally.stage_sums})


def run_step(base_url: str, user_ids: list[str], rps: float, seconds: float, seed: int = 0,
             max_in_flight: int = 512, k: int = 10, timeout_s: float = 5.0) -> StepResult:
    """Send GET /v1/recommend at `rps` (Poisson) for `seconds` on its own uvloop event loop. Stage timings are
    read from ~50 answers a second (parsing every body would take CPU from the server under test)."""
    sample_every = max(1, int(rps / 50))
    rng = np.random.default_rng(seed)
    n = int(rps * seconds)
    starts = np.cumsum(rng.exponential(1.0 / rps, n))
    paths = [f"/v1/recommend?user_id={u}&k={k}".encode() for u in rng.choice(user_ids, n)]
    with _no_gc(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run(base_url, paths, starts, rps, max_in_flight, timeout_s, sample_every))


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """No cyclic GC while requests are timed: the calling process may hold a big heap (the bench materializes a
    world first), and a collection stalls this loop (one full collection: hundreds of ms), which would be measured
    as the server's latency. The timeline's per-request log alone triggers a young collection every ~700 requests."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_timeline(base_url: str, user_ids: list[str], rps: float, seconds: float, seed: int = 0, k: int = 10,
                 max_in_flight: int = 64, timeout_s: float = 5.0) -> list[tuple[float, int, float]]:
    """Like run_step, but every request's (wall-clock send time, status, latency ms), status 0 for a transport
    failure: for a canary beside another load generator, whose figures are then cut by that run's phases."""
    rng = np.random.default_rng(seed)
    n = int(rps * seconds)
    starts = np.cumsum(rng.exponential(1.0 / rps, n))
    paths = [f"/v1/recommend?user_id={u}&k={k}".encode() for u in rng.choice(user_ids, n)]
    log: list[tuple[float, int, float]] = []
    with _no_gc(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_run(base_url, paths, starts, rps, max_in_flight, timeout_s, 10**9, log))
    wall_minus_perf = time.time() - time.perf_counter()
    return [(t + wall_minus_perf, status, ms) for t, status, ms in log]
