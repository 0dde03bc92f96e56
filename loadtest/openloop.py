"""An open-loop HTTP load generator: Poisson arrivals at a fixed offered rate, so a slow server is measured as
slow (queueing shows in latency) instead of being offered less load, which closed-loop tools do."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import numpy as np


@dataclass(frozen=True)
class StepResult:
    offered_rps: float
    achieved_rps: float
    ok: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    sources: dict[str, int]

    def to_json(self) -> dict:
        return self.__dict__.copy()


async def run_step(base_url: str, user_ids: list[str], rps: float, seconds: float, seed: int = 0,
                   max_in_flight: int = 512, k: int = 10) -> StepResult:
    """Send GET /v1/recommend at `rps` for `seconds`; latency is measured from each request's scheduled time."""
    rng = np.random.default_rng(seed)
    n = int(rps * seconds)
    starts = np.cumsum(rng.exponential(1.0 / rps, n))
    users = rng.choice(user_ids, n)
    latencies, sources, errors = [], {}, 0
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=5.0) as client:
        t0 = time.perf_counter()

        async def one(at: float, user: str) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
            scheduled = t0 + at
            try:
                r = await client.get("/v1/recommend", params={"user_id": user, "k": k})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append((time.perf_counter() - scheduled) * 1e3)
                s = r.json()["source"]
                sources[s] = sources.get(s, 0) + 1
            else:
                errors += 1

        await asyncio.gather(*(one(at, u) for at, u in zip(starts, users)))
        elapsed = time.perf_counter() - t0
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return StepResult(offered_rps=rps, achieved_rps=len(latencies) / elapsed, ok=len(latencies), errors=errors,
                      p50_ms=float(np.nanpercentile(lat, 50)), p99_ms=float(np.nanpercentile(lat, 99)),
                      max_ms=float(np.nanmax(lat)), sources=sources)
