"""`newsrec bench freshness`: how fresh the served answers are, p50 and p99 seconds, on real processes.

  article: from an ArticleEvent's publish (the produce call) until BOTH serving replicas can retrieve it
           (GET /v1/articles/{id}/status says live), polled every 5 ms; target p99 <= 2 s.
  click:   from a ClickEvent's publish on `clicks` until that reader's next /v1/recommend reflects it (the clicked
           article, the top of the previous answer, is excluded: the history changed, and with it the user
           vector, which is checked by the other items' scores changing); target p99 <= 1 s. Needs the feature
           updater (`newsrec worker features`).
Optionally under background stream load (the simulator replaying the world). JSON + PNG (CDFs) in --out.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from data import mind
from data.schema import BEHAVIORS_FILE, NEWS_FILE
from loadtest.stream_stack import StackConfig, StreamStack
from streaming.events import ArticleEvent, ClickEvent
from streaming.producer import EventPublisher

TARGET_ARTICLE_P99_S, TARGET_CLICK_P99_S = 2.0, 1.0
POLL_S = 0.005
GIVE_UP_S = 30.0


@dataclass(frozen=True)
class FreshnessConfig:
    world: Path
    registry: Path
    out: Path
    articles: int = 100
    clicks: int = 50
    gap_s: float = 0.2                  # pause between samples (each is measured alone)
    replicas: int = 2
    background_eps: float = 0.0         # simulator replay rate during the run (0: none)
    materialize_impressions: int | None = None
    seed: int = 0


def stats(xs: list[float]) -> dict:
    a = np.asarray(xs, np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "p50_s": round(float(np.percentile(a, 50)), 4),
            "p99_s": round(float(np.percentile(a, 99)), 4), "max_s": round(float(a.max()), 4),
            "mean_s": round(float(a.mean()), 4)}


async def _poll(check, t0: float) -> float:
    """Seconds from t0 (time.time()) until check() is true; raises after GIVE_UP_S."""
    while not await check():
        if time.time() - t0 > GIVE_UP_S:
            raise TimeoutError(f"not reflected after {GIVE_UP_S:.0f} s")
        await asyncio.sleep(POLL_S)
    return time.time() - t0


async def measure_articles(stack: StreamStack, publisher: EventPublisher, http: httpx.AsyncClient,
                           cfg: FreshnessConfig) -> dict:
    """Publish -> live on every replica, one article at a time; texts and labels borrowed from the world."""
    rng = np.random.default_rng(cfg.seed)
    sources = list(mind.iter_news(cfg.world / "dev" / NEWS_FILE))
    topic = stack.stream.topics.name("articles")
    both, per_replica, server_side = [], {u: [] for u in stack.replicas}, []
    for i in range(cfg.articles):
        src, now = sources[int(rng.integers(len(sources)))], stack.now()
        news_id = f"N6{cfg.seed % 100:02d}{i:08d}"
        event = ArticleEvent(event_id=f"fresh-{news_id}-{int(now)}", time_s=now, news_id=news_id, title=src.title,
                             abstract=src.abstract, category=src.category, subcategory=src.subcategory,
                             expire_s=now + 6 * 3600)
        t0 = time.time()
        await publisher.publish(topic, news_id, [event])

        async def live(url: str) -> dict | None:
            body = (await http.get(f"{url}/v1/articles/{news_id}/status")).json()
            return body if body["live"] else None

        async def seen(url: str) -> float:
            got: dict = {}

            async def check() -> bool:
                got["body"] = await live(url)
                return got["body"] is not None
            dt = await _poll(check, t0)
            if got["body"]["streamed_at_s"] is not None:
                server_side.append(got["body"]["streamed_at_s"] - t0)
            return dt

        lat = await asyncio.gather(*(seen(u) for u in stack.replicas))
        for u, x in zip(stack.replicas, lat):
            per_replica[u].append(x)
        both.append(max(lat))
        await asyncio.sleep(cfg.gap_s)
    return {"both_replicas": stats(both), "per_replica": {u: stats(v) for u, v in per_replica.items()},
            "server_side_applied": stats(server_side), "samples_s": [round(x, 4) for x in both],
            "target_p99_s": TARGET_ARTICLE_P99_S, "met": bool(np.percentile(both, 99) <= TARGET_ARTICLE_P99_S)}


def readers(world: Path, n: int, seed: int) -> list[str]:
    """Readers with a history (their user vector is built from it), in a fixed random order."""
    users = sorted({b.user_id for b in mind.iter_behaviors(world / "dev" / BEHAVIORS_FILE) if b.history})
    rng = np.random.default_rng(seed)
    return [users[i] for i in rng.permutation(len(users))[:n]]


async def measure_clicks(stack: StreamStack, publisher: EventPublisher, http: httpx.AsyncClient,
                         cfg: FreshnessConfig) -> dict:
    """Click the top item of a reader's answer; time until the next answer excludes it."""
    from feature_store.redis_store import RedisFeatureStore

    topic = stack.stream.topics.name("clicks")
    store = RedisFeatureStore(stack.cfg.redis_url, stack.cfg.prefix, socket_timeout_ms=2_000)
    out, vector_changed, in_history = [], 0, 0
    for i, user in enumerate(readers(cfg.world, cfg.clicks, cfg.seed)):
        url = stack.replicas[i % len(stack.replicas)]

        async def answer() -> dict[str, float]:
            r = await http.get(f"{url}/v1/recommend", params={"user_id": user, "k": 10})
            return {it["news_id"]: it["score"] for it in r.json()["items"]}
        before = await answer()
        clicked = next(iter(before))
        event = ClickEvent(event_id=f"fresh-click-{user}-{time.time_ns()}", time_s=stack.now(), user_id=user,
                           news_id=clicked, position=0)
        t0 = time.time()
        await publisher.publish(topic, user, [event])
        after: dict = {}

        async def reflected() -> bool:
            after["items"] = await answer()
            return clicked not in after["items"]
        out.append(await _poll(reflected, t0))
        common = set(before) & set(after["items"])
        vector_changed += any(abs(before[n] - after["items"][n]) > 1e-9 for n in common) or not common
        # the exclusion came from the click, not from a reshuffle: it is the newest item of the stored history
        in_history += (await store.get_user(user, stack.now())).history[:1] == (clicked,)
        await asyncio.sleep(cfg.gap_s)
    await store.close()
    return {"click_to_next": stats(out), "samples_s": [round(x, 4) for x in out],
            "user_vector_changed": f"{vector_changed}/{len(out)}", "click_in_history": f"{in_history}/{len(out)}",
            "target_p99_s": TARGET_CLICK_P99_S,
            "met": bool(np.percentile(out, 99) <= TARGET_CLICK_P99_S) if out else False}


async def _measure(stack: StreamStack, cfg: FreshnessConfig, clicks: bool) -> dict:
    from streaming.simulate import SimConfig, simulate

    publisher = EventPublisher(stack.stream, client_id="bench-freshness")
    await publisher.start()
    background = None
    if cfg.background_eps > 0:
        sim = SimConfig(world=cfg.world, rate=cfg.background_eps, speedup=0, duration_s=3_600,
                        clock_offset_s=stack.clock_offset_s)
        background = asyncio.create_task(simulate(sim, stack.stream, publisher))
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            result = {"article": await measure_articles(stack, publisher, http, cfg)}
            result["click"] = (await measure_clicks(stack, publisher, http, cfg) if clicks else
                               {"skipped": "no feature updater (`newsrec worker features`) in this build"})
    finally:
        if background is not None:
            background.cancel()
        await publisher.close()
    return result


def run(cfg: FreshnessConfig) -> dict:
    from feature_store.materialize import materialize_world
    from newsrec.services import LocalServices

    try:
        import streaming.feature_updater  # noqa: F401  (S1's worker; the click measure needs it)
        clicks = cfg.clicks > 0
    except ImportError:
        clicks = False
    cfg.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"config": {k: str(v) for k, v in cfg.__dict__.items()}}
    with LocalServices(cfg.out / "services") as endpoints:
        results["materialize"] = materialize_world(cfg.world, endpoints.redis_url, "fresh",
                                                   limit_impressions=cfg.materialize_impressions)
        stack_cfg = StackConfig(cfg.world, cfg.registry, endpoints.redis_url, endpoints.kafka_bootstrap, "fresh",
                                cfg.out / "logs", replicas=cfg.replicas, features_worker=clicks)
        started = time.monotonic()
        with StreamStack(stack_cfg) as stack:
            results["stack_start_s"] = round(time.monotonic() - started, 1)
            results |= asyncio.run(_measure(stack, cfg, clicks))
    (cfg.out / "bench_freshness.json").write_text(json.dumps(results, indent=1))
    _plot(results, cfg.out / "bench_freshness.png")
    return results


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("article", "publish -> retrievable on every replica", TARGET_ARTICLE_P99_S),
              ("click", "click -> next recommendation reflects it", TARGET_CLICK_P99_S)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (key, title, target) in zip(axes, panels):
        xs = np.sort(results.get(key, {}).get("samples_s", []))
        if xs.size:
            ax.step(xs, np.arange(1, xs.size + 1) / xs.size, where="post", label=f"n={xs.size}")
            for q, style in ((50, ":"), (99, "--")):
                ax.axvline(np.percentile(xs, q), color="gray", linestyle=style, linewidth=0.8, label=f"p{q}")
        else:
            ax.text(0.5, 0.5, results.get(key, {}).get("skipped", "no samples"), ha="center", wrap=True,
                    transform=ax.transAxes)
        ax.axvline(target, color="red", linewidth=0.8, label=f"target p99 {target:g} s")
        ax.set_xscale("log")
        ax.set_xlabel("seconds")
        ax.set_ylabel("fraction of samples")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle("newsrec freshness on one 2-core machine (all processes included)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
