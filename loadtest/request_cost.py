"""Server CPU per request kind (recommend, click event, shed) from the server process's own CPU counters: the
capacity of one worker per core, robust to a shared machine where latency-based ramps mostly measure neighbours.

  python -m loadtest.request_cost --pid $(pgrep -f 'newsrec serve' | head -1) --url http://127.0.0.1:8000
A shed is measured with `X-Prefetch: 1` against a server started with NEWSREC_ADMISSION__PREFETCH_MAX_IN_FLIGHT=0
(every prefetch is shed); other kinds need a stream-enabled server for events."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
import uuid
from pathlib import Path

import httpx

KINDS = ("recommend", "event", "shed")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(pid: int, url: str, kind: str, n: int = 1_500, concurrency: int = 4, users: int = 399) -> dict:
    """Send `n` requests of `kind` with `concurrency` in flight; the server's CPU ms per request and client p50."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    rng, latencies, expected = random.Random(0), [], {"recommend": 200, "event": 202, "shed": 503}[kind]
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        feed = (await client.get("/v1/recommend", params={"user_id": "U1"})).json()["items"]
        news_ids = [i["news_id"] for i in feed]
        remaining = iter(range(n))

        async def one() -> None:
            user = f"U{rng.randint(1, users)}"
            if kind == "event":
                click = {"type": "click", "event_id": uuid.uuid4().hex, "user_id": user,
                         "news_id": rng.choice(news_ids)}
                r = await client.post("/v1/events", json={"events": [click]})
            else:
                headers = {"X-Prefetch": "1"} if kind == "shed" else {}
                r = await client.get("/v1/recommend", params={"user_id": user}, headers=headers)
            if r.status_code != expected:
                raise RuntimeError(f"{kind}: expected HTTP {expected}, got {r.status_code}: {r.text[:200]}")

        async def worker() -> None:
            for _ in remaining:
                t = time.perf_counter()
                await one()
                latencies.append(time.perf_counter() - t)

        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
    latencies.sort()
    return {"kind": kind, "n": n, "server_cpu_ms_per_request": round(1e3 * cpu / n, 3),
            "per_core_capacity_rps": round(n / cpu, 1) if cpu else None, "achieved_rps": round(n / wall, 1),
            "client_p50_ms": round(1e3 * latencies[len(latencies) // 2], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, required=True, help="The server (uvicorn worker) process id.")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("-n", type=int, default=1_500, help="Requests per kind.")
    parser.add_argument("--repeat", type=int, default=2, help="Rounds over the kinds (report the median).")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for kind in args.kinds.split(","):
            result = asyncio.run(measure(args.pid, args.url, kind, args.n))
            runs.setdefault(kind, []).append(result["server_cpu_ms_per_request"])
            print(json.dumps(result), flush=True)
    print(json.dumps({"median_server_cpu_ms_per_request": {k: statistics.median(v) for k, v in runs.items()}}))


if __name__ == "__main__":
    main()
