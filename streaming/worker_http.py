"""A stream worker's Prometheus metrics and its tiny HTTP endpoint on 127.0.0.1: /readyz (the readiness signal),
/healthz and /metrics (consumer lag per partition, events by outcome, batch latency). No web framework needed."""
from __future__ import annotations

import asyncio
import json
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("newsrec.streaming.http")
BATCH_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WorkerMetrics:
    """One registry per worker (several workers can share a test process)."""

    def __init__(self, worker: str) -> None:
        r = self.registry = CollectorRegistry()
        self.worker = worker
        # highwater (from the last fetch response) minus the consumer's position. Not ListOffsets: Tansu 0.6
        # answers "latest" with the last batch's base offset + 1, which undercounts (measured).
        self.lag = Gauge("newsrec_stream_consumer_lag", "Records behind the partition's end", ["topic", "partition"],
                         registry=r)
        self.events = Counter("newsrec_stream_events_total", "Records by outcome", ["worker", "outcome"], registry=r)
        self.batch = Histogram("newsrec_stream_batch_seconds", "Parse + sink writes + dead letters + commit of one "
                               "polled batch", ["worker"], registry=r, buckets=BATCH_BUCKETS_S)
        self.batch_failures = Counter("newsrec_stream_batch_failures_total", "Batches whose writes failed and were "
                                      "polled again", ["worker"], registry=r)
        self.ready = Gauge("newsrec_stream_ready", "1 once the worker joined its group and its sinks answer",
                           ["worker"], registry=r)

    def count(self, outcome: str, n: int) -> None:
        """outcome: applied | duplicate | dead_lettered."""
        if n:
            self.events.labels(self.worker, outcome).inc(n)


class WorkerHttp:
    """GET /readyz -> 200 once `is_ready()` is true (503 before), /healthz -> 200, /metrics -> Prometheus text."""

    def __init__(self, metrics: WorkerMetrics, is_ready, host: str = "127.0.0.1", port: int = 0):
        self.metrics, self.is_ready, self.host, self.port = metrics, is_ready, host, port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the bound port (port 0 picks a free one)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing here needs them
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            status, ctype, body = self._route(parts[0] if parts else "", path)
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            log.debug("metrics connection dropped: %s", exc)
        finally:
            writer.close()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "application/json", b'{"error": "method_not_allowed"}'
        if path == "/metrics":
            return "200 OK", "text/plain; version=0.0.4", generate_latest(self.metrics.registry)
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status": "alive"}'
        if path == "/readyz":
            ready = bool(self.is_ready())
            return ("200 OK" if ready else "503 Service Unavailable", "application/json",
                    json.dumps({"ready": ready, "worker": self.metrics.worker}).encode())
        return "404 Not Found", "application/json", b'{"error": "not_found"}'

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
