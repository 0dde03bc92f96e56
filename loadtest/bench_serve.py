"""`newsrec bench serve`: the optimized service against a naive baseline, on one machine, in one run.

Stack: local redis-server with a world materialized into it, a catalogue topped up to >= 50k live articles,
`newsrec serve` per system, and the open-loop generator (loadtest.openloop) in this process on the same cores.
Systems (SYSTEMS): optimized (onnxruntime, in-process item table and pool counters, 2 workers), the same with
micro-batching of the user tower + search (and of the ranker too), the same on 1 worker, and naive (torch eager, no
batching, candidate features read from Redis per request). Each gets the same steps of offered load; per step: latency, CPU per request of server, Redis and load
generator, and mean stage times from the answers' own timings. Results go to JSON and a PNG.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
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
from loadtest.bench_report import plot, summarize
from loadtest.openloop import run_step

# Admission control is off here: it turns queueing into fast 503s, and this benchmark measures the queueing
# (latency against offered load, and where it passes the SLA). Its own effect is measured by its own runs.
_COMMON = {"NEWSREC_ADMISSION__ENABLED": "false"}
_FAST = _COMMON | {"NEWSREC_MODEL__BACKEND": "onnxruntime", "NEWSREC_MICRO_BATCH_WAIT_MS": "0",
                   "NEWSREC_RANKER_BATCH_WAIT_MS": "0"}
SYSTEMS = {
    "optimized": {"env": _FAST, "workers": 2},
    "optimized_batching": {"env": _FAST | {"NEWSREC_MICRO_BATCH_WAIT_MS": "2"}, "workers": 2},  # user tower+search
    "optimized_batching_ranker": {"env": _FAST | {"NEWSREC_MICRO_BATCH_WAIT_MS": "2",
                                                  "NEWSREC_RANKER_BATCH_WAIT_MS": "2"}, "workers": 2},
    "optimized_1worker": {"env": _FAST, "workers": 1},
    # optimized_batching with the surge options: model calls off the event loop, loop turns, a 0.5 ms GIL switch
    "batching_off_loop": {"env": _FAST | {"NEWSREC_MICRO_BATCH_WAIT_MS": "2", "NEWSREC_OFF_LOOP_WHEN": "always"},
                          "workers": 2},
    # the service before IVF and the int8 ranker (exact search, fp32 ranker), with user tower + search batching
    "exact_fp32_batching": {"env": _FAST | {"NEWSREC_MICRO_BATCH_WAIT_MS": "2", "NEWSREC_MODEL__INT8_RANKER": "false",
                                            "NEWSREC_IVF_MIN_ARTICLES": "1000000000"}, "workers": 2},
    "naive": {"env": _COMMON | {"NEWSREC_MODEL__BACKEND": "torch", "NEWSREC_ITEM_FEATURES_FROM_STORE": "true",
                                "NEWSREC_MICRO_BATCH_WAIT_MS": "0", "NEWSREC_RANKER_BATCH_WAIT_MS": "0"},
              "workers": 1},
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


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
    systems: tuple[str, ...] = ("optimized", "naive")
    # the machine is shared with other work: a step during which other processes kept more than max_other_cores
    # busy is repeated, up to step_tries runs in all, and the least disturbed run is kept (each step records both)
    max_other_cores: float = 0.25
    step_tries: int = 3


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a process and all its descendants (uvicorn workers are children)."""
    total = 0.0
    for p in (pid, *_descendants(pid)):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot, all cores (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK  # user..steal, minus idle and iowait


def _descendants(pid: int) -> list[int]:
    try:
        children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                    for c in (task / "children").read_text().split()]
    except FileNotFoundError:
        return []
    return children + [d for c in children for d in _descendants(c)]


def _has_torch_weights(registry: Path) -> bool:
    from recsys.bundle import WEIGHTS
    from recsys.registry import ModelRegistry

    version = ModelRegistry(registry).load()
    return all((version.path / f).exists() for f in WEIGHTS.values())


def _serve(cfg: BenchConfig, catalogue: Path, redis_url: str, prefix: str, port: int, system: str):
    spec = SYSTEMS[system]
    env = os.environ | spec["env"] | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "newsrec.cli", "serve", "--catalogue", str(catalogue), "--registry",
           str(cfg.registry), "--redis-url", redis_url, "--prefix", prefix, "--world-end", "--port", str(port),
           "--workers", str(spec["workers"])]
    backend = spec["env"].get("NEWSREC_MODEL__BACKEND")  # `newsrec serve --backend` (default onnxruntime) wins
    if backend == "torch" and not _has_torch_weights(cfg.registry):
        backend = "onnxruntime"  # a version exported without safetensors: what ran shows in the JSON's model
    if backend:
        cmd += ["--backend", backend]
    log = cfg.out / f"serve-{system}.log"  # a file, not a pipe: a full pipe would stall the server mid-run
    with log.open("w") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                time.sleep(5.0 if spec["workers"] > 1 else 0.0)  # the other workers start alongside the first
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not become ready in 240 s")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (uvicorn finishes what is in flight), then SIGKILL to the server and its workers after 30 s."""
    workers = _descendants(proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        for pid in [*workers, proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)


def served_index(metrics_text: str) -> dict:
    """What one worker's /metrics says it served: pool size, IVF nprobe and recall@500 against exact search on its
    calibration readers (None: exact search), model version and backend (an int8 ranker shows in the backend)."""
    lines = metrics_text.splitlines()

    def gauge(name: str) -> float | None:
        return next((float(ln.split()[-1]) for ln in lines if ln.startswith(name + " ")), None)

    model = next((ln for ln in lines if ln.startswith("newsrec_model_info{")), "")
    labels = dict(kv.split("=", 1) for kv in model[model.find("{") + 1:model.rfind("}")].split(",") if "=" in kv)
    exact = not gauge("newsrec_index_ivf_nprobe")  # a gauge never set reads 0
    return {"pool": gauge("newsrec_pool_articles"), "ivf_nprobe": None if exact else gauge("newsrec_index_ivf_nprobe"),
            "ivf_recall_at_500": None if exact else gauge("newsrec_index_ivf_recall"),
            "model": {k: v.strip('"') for k, v in labels.items()}}


def _step(cfg: BenchConfig, base: str, users: list[str], rate: float, server_pid: int, redis_pid: int | None
          ) -> dict:
    """One step of offered load, with CPU per request of server, Redis and generator, and the other processes'."""
    cpu0, redis0 = cpu_seconds(server_pid), cpu_seconds(redis_pid) if redis_pid else 0.0
    busy0, wall0 = machine_busy_seconds(), time.monotonic()
    step = run_step(base, users, rate, cfg.step_s, seed=cfg.seed + int(rate)).to_json()
    sent = max(step["ok"] + step["errors"] + step["shed"], 1)
    server_s = cpu_seconds(server_pid) - cpu0
    redis_s = cpu_seconds(redis_pid) - redis0 if redis_pid else 0.0
    wall = time.monotonic() - wall0
    step["server_cpu_ms_per_request"] = 1e3 * server_s / sent
    step["redis_cpu_ms_per_request"] = 1e3 * redis_s / sent
    # cores busy with anything but this benchmark's processes during the step
    ours = server_s + redis_s + step["client_cpu_ms_per_request"] * sent / 1e3
    step["other_processes_cores"] = max(0.0, (machine_busy_seconds() - busy0 - ours) / wall)
    return step


def _run_system(cfg: BenchConfig, system: str, catalogue: Path, redis_url: str, redis_pid: int | None,
                users: list[str]) -> dict:
    from newsrec.services import free_port

    port = free_port()
    proc = _serve(cfg, catalogue, redis_url, "bench", port, system)
    base = f"http://127.0.0.1:{port}"
    try:
        run_step(base, users, 50, 3.0, seed=cfg.seed)  # warm-up (and the first counter refresh), not reported
        steps = []
        for rate in cfg.rates:
            tries = []  # the machine is shared: a step disturbed by other processes is run again (kept: least so)
            while len(tries) < cfg.step_tries:
                tries.append(_step(cfg, base, users, rate, proc.pid, redis_pid))
                if tries[-1]["other_processes_cores"] <= cfg.max_other_cores:
                    break
                time.sleep(2.0)
            step = min(tries, key=lambda t: t["other_processes_cores"]) | {"tries": len(tries)}
            steps.append(step)
            if step["p99_ms"] > 1_000:  # far past saturation: the rest would only measure queueing
                break
        return {"workers": SYSTEMS[system]["workers"], "env": SYSTEMS[system]["env"], "steps": steps,
                **served_index(httpx.get(f"{base}/metrics").text)}
    finally:
        _stop(proc)


def run(cfg: BenchConfig) -> dict:
    from feature_store.materialize import materialize_world
    from newsrec.services import LocalServices

    unknown = set(cfg.systems) - set(SYSTEMS)
    if unknown:
        raise ValueError(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    catalogue = write_catalogue(cfg.world, cfg.out / "catalogue", cfg.live_articles, cfg.seed)
    users = [f"U{i}" for i in range(1, 5_000)]
    results = {"config": {k: str(v) for k, v in cfg.__dict__.items()}, "machine": {"cpus": os.cpu_count()},
               "systems": {}}
    services = LocalServices(cfg.out / "services")
    endpoints = services.start()
    try:
        results["materialize"] = materialize_world(cfg.world, endpoints.redis_url, "bench",
                                                   limit_impressions=cfg.materialize_impressions)
        redis = services.processes.get("redis")
        for system in cfg.systems:
            results["systems"][system] = _run_system(cfg, system, catalogue, endpoints.redis_url,
                                                     redis.pid if redis else None, users)
    finally:
        services.stop()
    summarize(results)
    (cfg.out / "bench_serve.json").write_text(json.dumps(results, indent=1))
    plot(results, cfg.out / "bench_serve.png")
    shutil.rmtree(cfg.out / "services", ignore_errors=True)
    return results
