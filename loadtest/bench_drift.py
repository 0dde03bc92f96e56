"""`newsrec bench drift`: three systems through the world's interest shift and breaking news, in one run on the
real stack, scored against the world's ground truth.

  online             streamed features (feature updater) + the online trainer promoting fine-tuned versions
  features_streamed  the same streamed features, the model frozen at the window start
  frozen             features and model frozen at the window start (no updater; its own copy of the store)
All three serve the same catalogue (an article is live from its publish time, as for every system), start from one
model trained only on the world's log before the first window, and are asked for the same readers at the same
simulated instants: each world minute, the readers who read in that minute (drift_world.ActiveReaders). Per
window: materialize the store as of its start, replay the world's events into Kafka at a speed-up stamped with
world time (every replica's clock runs at that speed-up too), query, score.

Beside them, in a window holding the interest shift, a ceiling that nobody serves (CEILING): the best 10 by true
relevance, except that a shifted reader who has not clicked since the shift is ranked by their interests from before
it. That is the recovery target measured on what any system could know.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import Counter
from datetime import datetime
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import numpy as np

from data.truth import GroundTruth
from feature_store.materialize import materialize_world
from loadtest.drift_report import plot, summarize
from loadtest.drift_stack import Processes, SimClock, copy_prefix, drop_prefix, replay
from loadtest.drift_world import (ActiveReaders, Scorer, Window, default_events, drift_events, past_world,
                                  windows)
from recsys.dataset import load_dataset
from recsys.features import FeatureSpec
from recsys.registry import ModelRegistry
from streaming.online_training import OnlineTrainingConfig
from streaming.settings import StreamSettings, Topics
from streaming.topics import ensure_topics

SYSTEMS = ("online", "features_streamed", "frozen")
# not served: what the best possible system could have shown (Scorer.revealed_best), in windows with the shift
CEILING = "revealed_oracle"
# This bench compares ranking quality, not latency: a generous budget and store timeout keep a busy 2-core box
# from degrading answers to retrieval order or trending (the answers' `source` counts are kept to show it).
QUALITY_BUDGET = {"X-Request-Budget-Ms": "1000"}
QUALITY_SERVE_ENV = {"NEWSREC_STORE__SOCKET_TIMEOUT_MS": "1000", "NEWSREC_LOG_JSON": "false",
                     "NEWSREC_REGISTRY_POLL_S": "1"}
# Sized for the bench's stream (a few impressions per world second at most): a promotion may follow every 10 wall
# seconds (the churn bound), judged on the newest 300 held-out impressions.
BENCH_TRAINING = OnlineTrainingConfig(min_train_rows=1_000, min_holdout_impressions=40, holdout_impressions=300,
                                      eval_every_s=2.0, min_promote_interval_s=10.0, join_window_s=120.0)


@dataclass(frozen=True)
class DriftConfig:
    world: Path
    out: Path = Path("var/bench/drift")
    speedup: float = 15.0          # world seconds per wall second
    pre_min: float = 20.0          # world minutes replayed before each event ...
    post_min: float = 60.0         # ... and after it
    step_min: float = 1.0          # world minutes between two measurements
    readers: int = 60              # at most this many of the readers who read in each measured minute
    events: tuple[str, ...] = ()   # DriftEvent names; () = the interest shift and the breaking news nearest to it
    # wall seconds the stack gets to start (and the store to be materialized) before the clock reaches the window;
    # None: 45 s + the events to materialize at 700/s (measured here: 850-1650/s on a busy 2-core box)
    start_margin_s: float | None = None
    concurrency: int = 6
    retrieval_epochs: int = 1      # the frozen starting model, trained on the world's past only
    ranker_epochs: int = 2
    training: OnlineTrainingConfig = field(default_factory=lambda: BENCH_TRAINING)
    seed: int = 0


def base_model(cfg: DriftConfig, until_s: float) -> Path:
    """A registry whose current version was trained on the world's log before world second `until_s` (cached)."""
    from recsys.train import TrainConfig, train

    root = cfg.out / f"base-{int(until_s)}"
    registry = ModelRegistry(root / "registry")
    if registry.root.is_dir() and registry.current() is not None:
        return registry.root
    past = past_world(cfg.world, until_s, root / "world")
    tc = TrainConfig()
    train(past, registry, replace(tc, retrieval=replace(tc.retrieval, epochs=cfg.retrieval_epochs),
                                  ranker=replace(tc.ranker, epochs=cfg.ranker_epochs)))
    return registry.root


async def measure(cfg: DriftConfig, clock: SimClock, scorer: Scorer, active: ActiveReaders, urls: dict[str, str],
                  w: Window) -> list[dict]:
    """At each instant t: every system's top 10 for the readers who read in [t, t + step) (at most cfg.readers),
    scored at t against the truth; in a window with the shift, also the ceiling's (CEILING, computed from the truth,
    never served). `informed`: the shifted ones among them who clicked since the shift (the
    stream has carried a sign of their new interests); None in a window without the shift."""
    out, step_s = [], cfg.step_min * 60
    shifted = scorer.shifted
    shift_s = next((e.time_s for e in w.events if e.name == "interest_shift"), None)
    sem = asyncio.Semaphore(cfg.concurrency)
    async with httpx.AsyncClient(timeout=10.0) as client:
        async def ask(system: str, user: str) -> tuple[str, str, dict | None]:
            async with sem:
                try:
                    r = await client.get(f"{urls[system]}/v1/recommend", params={"user_id": user, "k": 10},
                                         headers=QUALITY_BUDGET)
                    return system, user, r.json() if r.status_code == 200 else None
                except httpx.HTTPError:
                    return system, user, None

        t = w.start_s
        while t <= w.end_s:
            if (wait := clock.wall_at(scorer.start_unix + t) - time.time()) > 0:
                await asyncio.sleep(wait)
            # behind (a late start, a slow instant): measure now rather than at an instant already past
            t = max(t, clock.now() - scorer.start_unix)
            readers = active.sample(t, t + step_s, cfg.readers, cfg.seed + int(t))
            answers = await asyncio.gather(*(ask(s, u) for u in readers for s in SYSTEMS))  # a reader's 3 together
            ideals = await asyncio.to_thread(lambda at=float(t): {u: scorer.ideal(u, at) for u in readers})
            best = {} if shift_s is None else await asyncio.to_thread(
                lambda at=float(t): {u: scorer.revealed_best(u, at, shift_s) for u in readers})
            informed = {u for u in readers if u in shifted and shift_s is not None and shift_s <= t
                        and scorer.clicked_between(u, shift_s, t)}
            rows: dict[str, list] = {s: [] for s in SYSTEMS}
            for system, user, body in answers:
                served = [i["news_id"] for i in body["items"]] if body else []
                ndcg, ctr = scorer.score(user, served, float(t), ideals[user])
                rows[system].append((user, ndcg, ctr, body))
            if best:
                rows[CEILING] = [(u, *scorer.score(u, best[u], float(t), ideals[u]), {"source": "truth",
                                                                                    "model_version": "truth"})
                                 for u in readers]
            for system, got in rows.items():
                mean = lambda vals: float(np.mean(vals)) if vals else None  # noqa: E731
                out.append({"t_s": float(t), "system": system, "readers": len(got),
                            "ndcg10": mean([n for _, n, _, _ in got]), "ctr": mean([c for _, _, c, _ in got]),
                            "ndcg10_shifted": mean([n for u, n, _, _ in got if u in shifted]),
                            "ndcg10_informed": mean([n for u, n, _, _ in got if u in informed]),
                            "shifted": sum(u in shifted for u, *_ in got), "informed": len(informed),
                            "errors": sum(b is None for *_, b in got),
                            "sources": dict(Counter(b["source"] for *_, b in got if b)),
                            "model_versions": sorted({b["model_version"][:5] for *_, b in got if b})})
            t += step_s
    return out


def _trainer_stats(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=5.0).text
    return {line.split('"')[1]: float(line.split()[-1]) for line in text.splitlines()
            if line.startswith('newsrec_trainer{stat="')}


def run_window(cfg: DriftConfig, endpoints, w: Window, k: int, base: Path, truth: GroundTruth, ds) -> dict:
    """The three systems through one window. The replicas start first (their clock is fixed at launch: the
    world reaches the window's start start_margin_s later) while the store is materialized beside them."""
    from newsrec.services import free_port

    wdir = cfg.out / f"window-{k}"
    shutil.rmtree(wdir, ignore_errors=True)
    active = ActiveReaders(ds, truth)
    readers = active.between(w.start_s, w.end_s + cfg.step_min * 60)  # every reader an instant may ask
    scorer = Scorer(truth, ds, readers)
    start_unix, end_unix = scorer.start_unix + w.start_s, scorer.start_unix + w.end_s
    live, frozen, topics = f"drift{k}-live", f"drift{k}-frozen", f"drift{k}-"
    registries = {s: wdir / f"registry-{s}" for s in SYSTEMS}
    for path in registries.values():
        shutil.copytree(base, path)
    stream = StreamSettings(bootstrap_servers=endpoints.kafka_bootstrap, topics=Topics(prefix=topics))
    ensure_topics(stream)
    margin = cfg.start_margin_s
    if margin is None:
        before = sum(int((sp.imp_t < start_unix - ds.origin.timestamp()).sum() +
                         ((sp.row_label == 1) & (sp.row_t < start_unix - ds.origin.timestamp())).sum())
                     for sp in (ds.train, ds.dev))
        margin = 45.0 + before / 700.0
    clock = SimClock(start_unix, time.time() + margin, cfg.speedup)
    procs, ports = Processes(wdir / "logs"), {s: free_port() for s in (*SYSTEMS, "features", "trainer")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    stream_env = {"NEWSREC_STREAM__BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap,
                  "NEWSREC_STREAM__TOPICS__PREFIX": topics}
    try:
        for s in SYSTEMS:
            env = clock.serve_env() | QUALITY_SERVE_ENV
            procs.start(s, ["serve", "--catalogue", str(cfg.world), "--registry", str(registries[s]), "--redis-url",
                            endpoints.redis_url, "--prefix", frozen if s == "frozen" else live, "--port",
                            str(ports[s])], env | (stream_env if s == "online" else {}))
        started = time.perf_counter()
        spec = FeatureSpec.from_json(ModelRegistry(base).get(ModelRegistry(base).current()).feature_spec)
        # the model's position prior weighs expected clicks, as the feature updater will from its registry
        materialized = materialize_world(cfg.world, endpoints.redis_url, live, now_s=start_unix, spec=spec)
        copied = copy_prefix(endpoints.redis_url, live, frozen)
        setup_s = time.perf_counter() - started
        common = ["--bootstrap-servers", endpoints.kafka_bootstrap, "--redis-url", endpoints.redis_url, "--prefix",
                  live, "--topic-prefix", topics, "--registry", str(registries["online"])]
        training_env = {f"NEWSREC_TRAINING__{key.upper()}": str(v) for key, v in cfg.training.model_dump().items()}
        for worker, extra, env in (("features", ["--log-level", "warning"], {}),  # the trainer logs each gate
                                   ("trainer", ["--catalogue", str(cfg.world), "--log-level", "info"], training_env)):
            procs.start(worker, ["worker", worker, *common, *extra, "--metrics-port", str(ports[worker])], env)
        for name in procs.procs:
            procs.wait_ready(name, urls[name])
        ready_late_s = max(0.0, time.time() - clock.wall0)

        async def both():
            return await asyncio.gather(replay(cfg.world, start_unix, end_unix, clock, stream, topics),
                                        measure(cfg, clock, scorer, active, urls, w))

        replayed, points = asyncio.run(both())
        trainer = _trainer_stats(urls["trainer"])
    finally:
        procs.stop()
        for prefix in (live, frozen):
            drop_prefix(endpoints.redis_url, prefix)
    base_version = ModelRegistry(base).current()
    promotions = [{"version": h["version"][:5],
                   "t_s": round(clock.world_at(datetime.fromisoformat(h["at"]).timestamp()) - scorer.start_unix, 1)}
                  for h in ModelRegistry(registries["online"]).history() if h["version"] != base_version]
    return {"window": {"start_s": w.start_s, "end_s": w.end_s}, "events": [e.__dict__ for e in w.events],
            "readers_in_window": len(readers), "points": points, "replay": replayed, "trainer": trainer,
            "promotions": promotions,
            "setup": {"materialized": materialized, "frozen_keys_copied": copied, "seconds": round(setup_s, 1),
                      "start_margin_s": round(margin, 1),
                      "stack_ready_late_s": round(ready_late_s, 1)}, "exit_codes": procs.exit_codes}


def run(cfg: DriftConfig) -> dict:
    from newsrec.services import LocalServices

    cfg = replace(cfg, world=cfg.world.resolve(), out=cfg.out.resolve())  # the services run in their own cwd
    cfg.out.mkdir(parents=True, exist_ok=True)
    truth = GroundTruth.load(cfg.world)
    every = drift_events(truth)
    events = [e for e in every if e.name in cfg.events] if cfg.events else default_events(every)
    if not events:
        raise ValueError(f"no drift event named {cfg.events} in {cfg.world}")
    wins = windows(events, cfg.pre_min * 60, cfg.post_min * 60)
    started = time.perf_counter()
    base = base_model(cfg, wins[0].start_s)
    ds = load_dataset(cfg.world)
    results = {"config": {k: str(v) for k, v in cfg.__dict__.items()}, "systems": list(SYSTEMS), "ceiling": CEILING,
               "base_model": {"registry": str(base), "trained_until_s": wins[0].start_s,
                              "seconds": round(time.perf_counter() - started, 1)}, "windows": []}
    with LocalServices(cfg.out / "services") as endpoints:
        for k, w in enumerate(wins):
            results["windows"].append(run_window(cfg, endpoints, w, k, base, truth, ds))
    summarize(results)
    (cfg.out / "bench_drift.json").write_text(json.dumps(results, indent=1, default=str))
    plot(results, cfg.out / "bench_drift.png")
    shutil.rmtree(cfg.out / "services", ignore_errors=True)
    return results
