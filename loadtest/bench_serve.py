"""`newsrec bench serve`: the optimized service against a naive baseline, on one machine, in one run.

Stack: local redis-server with a world materialized into it, a catalogue topped up to >= 50k live articles,
`newsrec serve` (1 worker; the load generator takes the other core). Systems:
  optimized: onnxruntime, in-process item table;  naive: torch eager, candidate features read from Redis per
  request. Each gets the same open-loop steps of offered load; results go to JSON and a PNG.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np

from data import mind
from data.schema import NEWS_FILE, NEWS_META_FILE, NewsMeta
from data.synth_text import make_article
from data.vocab import subcategory_list
from loadtest.openloop import run_step

SYSTEMS = {"optimized": {"NEWSREC_MODEL__BACKEND": "onnxruntime"},
           "naive": {"NEWSREC_MODEL__BACKEND": "torch", "NEWSREC_ITEM_FEATURES_FROM_STORE": "true"}}


@dataclass(frozen=True)
class BenchConfig:
    world: Path
    registry: Path
    out: Path
    live_articles: int = 50_000
    rates: tuple[float, ...] = (100, 200, 300, 500, 700, 900)
    step_s: float = 8.0
    materialize_impressions: int = 40_000
    seed: int = 0


def write_catalogue(world: Path, out: Path, live_articles: int, seed: int) -> Path:
    """The world's articles plus synthetic ones, all live at the world's end, until >= live_articles are live."""
    rng = np.random.default_rng(seed)
    news = list(mind.iter_news(world / "dev" / NEWS_FILE))
    metas = list(mind.iter_news_meta(world / NEWS_META_FILE))
    end = max(m.publish_time for m in metas)
    live = sum(m.publish_time <= end < m.expire_time for m in metas)
    subs = subcategory_list()
    extra = max(0, live_articles - live)
    for i in range(extra):
        cat, sub = subs[int(rng.integers(len(subs)))]
        a = make_article(rng, f"N{9_000_000 + i}", cat, sub)
        publish = end - timedelta(hours=float(rng.uniform(0, 20)))
        news.append(a)
        metas.append(NewsMeta(a.news_id, publish, publish + timedelta(hours=36)))
    (out / "dev").mkdir(parents=True, exist_ok=True)
    mind.write_news(out / "dev" / NEWS_FILE, news)
    mind.write_news_meta(out / NEWS_META_FILE, metas)
    return out


def _serve(cfg: BenchConfig, catalogue: Path, redis_url: str, prefix: str, port: int, system: str):
    env = os.environ | SYSTEMS[system] | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "newsrec.cli", "serve", "--catalogue", str(catalogue), "--registry",
           str(cfg.registry), "--redis-url", redis_url, "--prefix", prefix, "--world-end", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not become ready in 180 s")


def _stage_means(base_url: str) -> dict[str, float]:
    """Mean milliseconds per request of each pipeline stage, from the server's own histograms."""
    sums, counts = {}, {}
    for line in httpx.get(f"{base_url}/metrics").text.splitlines():
        if line.startswith("newsrec_stage_seconds_sum"):
            sums[line.split('"')[1]] = float(line.split()[-1])
        elif line.startswith("newsrec_stage_seconds_count"):
            counts[line.split('"')[1]] = float(line.split()[-1])
    return {k: 1e3 * sums[k] / counts[k] for k in sums if counts.get(k)}


def run(cfg: BenchConfig) -> dict:
    from feature_store.materialize import materialize_world
    from newsrec.services import LocalServices, free_port

    cfg.out.mkdir(parents=True, exist_ok=True)
    catalogue = write_catalogue(cfg.world, cfg.out / "catalogue", cfg.live_articles, cfg.seed)
    users = [f"U{i}" for i in range(1, 5_000)]
    results = {"config": {k: str(v) for k, v in cfg.__dict__.items()}, "systems": {}}
    with LocalServices(cfg.out / "services") as endpoints:
        stats = materialize_world(cfg.world, endpoints.redis_url, "bench",
                                  limit_impressions=cfg.materialize_impressions)
        results["materialize"] = stats
        for system in SYSTEMS:
            port = free_port()
            proc = _serve(cfg, catalogue, endpoints.redis_url, "bench", port, system)
            base = f"http://127.0.0.1:{port}"
            try:
                asyncio.run(run_step(base, users, 50, 3.0, seed=cfg.seed))  # warm-up, not reported
                steps = []
                for rate in cfg.rates:
                    step = asyncio.run(run_step(base, users, rate, cfg.step_s, seed=cfg.seed + int(rate)))
                    steps.append(step.to_json())
                    if step.p99_ms > 1_000:  # far past saturation: the rest would only measure queueing
                        break
                pool = httpx.get(f"{base}/metrics").text
                results["systems"][system] = {"steps": steps, "stage_ms": _stage_means(base),
                                              "pool": next((ln.split()[-1] for ln in pool.splitlines()
                                                            if ln.startswith("newsrec_pool_articles")), None)}
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    for name, r in results["systems"].items():
        good = [s["achieved_rps"] for s in r["steps"] if s["p99_ms"] < 100 and s["errors"] == 0]
        r["max_rps_p99_under_100ms"] = max(good) if good else 0.0
    (cfg.out / "bench_serve.json").write_text(json.dumps(results, indent=1))
    _plot(results, cfg.out / "bench_serve.png")
    shutil.rmtree(cfg.out / "services", ignore_errors=True)
    return results


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, r in results["systems"].items():
        x = [s["offered_rps"] for s in r["steps"]]
        ax.plot(x, [s["p99_ms"] for s in r["steps"]], marker="o", label=f"{name} p99")
        ax.plot(x, [s["p50_ms"] for s in r["steps"]], marker=".", linestyle="--", label=f"{name} p50")
    ax.axhline(100, color="red", linewidth=0.8, label="SLA p99 100 ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (requests/s, open loop)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("newsrec /v1/recommend on 2 cores (load generator included)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
