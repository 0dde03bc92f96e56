"""The drift benchmark's running parts: a simulated clock shared by the replay and every serving process, the
processes themselves (started here, stopped by PID), a Redis prefix copy (the frozen system's store), and the
replay of a window of the world into Kafka stamped with the world's own times."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import redis

from data.events import iter_world_events
from loadtest.stream_stack import wait_ready
from streaming.producer import EventPublisher
from streaming.settings import StreamSettings
from streaming.simulate import to_stream

READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class SimClock:
    """World time (Unix s) = start_unix + (wall - wall0) * speedup, for the replay and every replica alike."""

    start_unix: float
    wall0: float
    speedup: float

    def now(self) -> float:
        return self.world_at(time.time())

    def world_at(self, wall: float) -> float:
        return self.start_unix + (wall - self.wall0) * self.speedup

    def wall_at(self, world_unix: float) -> float:
        return self.wall0 + (world_unix - self.start_unix) / self.speedup

    def serve_env(self) -> dict[str, str]:
        """serving.settings: now = t + offset + (t - origin) * (speedup - 1), the same line as now()."""
        return {"NEWSREC_CLOCK_OFFSET_S": repr(self.start_unix - self.wall0),
                "NEWSREC_CLOCK_SPEEDUP": repr(self.speedup), "NEWSREC_CLOCK_WALL_ORIGIN_S": repr(self.wall0)}


@dataclass
class Processes:
    """`newsrec` sub-processes with their logs in log_dir; stop() SIGTERMs each (by PID) and records exit codes."""

    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("NEWSREC_")}
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen([sys.executable, "-m", "newsrec.cli", *args], stdout=log,
                                                stderr=subprocess.STDOUT, env=base | {"OMP_NUM_THREADS": "1"} | env)

    def wait_ready(self, name: str, url: str) -> None:
        wait_ready(name, self.procs[name], url, self.log_dir / f"{name}.log", READY_TIMEOUT_S)

    def stop(self, timeout_s: float = 30.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # workers finish their batch and commit; servers drain
        deadline = time.monotonic() + timeout_s
        for name, proc in self.procs.items():
            try:
                self.exit_codes[name] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.exit_codes[name] = None  # did not stop on SIGTERM
        self.procs.clear()


def copy_prefix(redis_url: str, src: str, dst: str, skip: str = ":ev:") -> int:
    """COPY every key under `src:` to `dst:` (dedup marks skipped: the copy is never written to)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k for k in client.scan_iter(match=f"{src}:*", count=2_000) if skip.encode() not in k]
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.copy(k, dst.encode() + k[len(src):], replace=True)
        pipe.execute()
        return len(keys)
    finally:
        client.close()


def drop_prefix(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=2_000))
        for i in range(0, len(keys), 5_000):
            client.unlink(*keys[i:i + 5_000])
    finally:
        client.close()


def _unix(t) -> float:
    return t.replace(tzinfo=UTC).timestamp()  # the world's naive times are UTC (materialize reads them so)


async def replay(world: Path, start_unix: float, end_unix: float, clock: SimClock, stream: StreamSettings,
                 run_id: str) -> dict:
    """Publish the world's articles, impressions and clicks in [start, end) when the clock reaches their time,
    stamped with that world time (a late start catches up at once). Returns counts and the worst lateness."""
    publisher = EventPublisher(stream, client_id="newsrec-drift-replay")
    sent, late_s = {"articles": 0, "impressions": 0, "clicks": 0}, 0.0
    events = (e for e in iter_world_events(world) if start_unix <= _unix(e.time) < end_unix)
    batch: list = []
    try:
        for e in events:
            due = clock.wall_at(_unix(e.time))
            if batch and (due > time.time() or len(batch) >= 500):
                await publisher.publish_many(batch)
                batch = []
            if (wait := due - time.time()) > 0:
                await asyncio.sleep(wait)
            late_s = max(late_s, time.time() - due)
            topic, key, event = to_stream(e, _unix(e.time), run_id, 1.0)
            batch.append((stream.topics.name(topic), key, event))
            sent[topic] += 1
        if batch:
            await publisher.publish_many(batch)
    finally:
        await publisher.close()
    return {"sent": sent, "max_late_s": round(late_s, 3)}
