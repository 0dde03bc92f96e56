"""Materialization: load an offline world (recsys.dataset) into a FeatureStore by replaying its log in time order
through the same updates the stream applies, so online counters equal the offline LogCounters replay.
"""
from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from data import mind
from data.schema import NEWS_FILE
from feature_store.base import ClickUpdate, FeatureStore, FeatureUpdate, HistorySeed, ImpressionUpdate, ItemFeatures
from feature_store.redis_store import RedisFeatureStore
from recsys.dataset import Dataset, Split, load_dataset
from recsys.features import FeatureSpec
from recsys.ranking_data import position_prior

log = logging.getLogger(__name__)
BATCH_UPDATES = 1_000  # Lua calls per pipelined round trip: ~1 ms of Redis work each, far from its output limits


def _event_prefixes(ds: Dataset) -> dict[str, str]:
    """Event-id prefix per split: "imp-{impression_id}" when ids are unique across splits (synthetic worlds),
    "imp-dev-{impression_id}" for real MIND, whose train and dev both count impressions from 1."""
    if np.intersect1d(ds.train.imp_id, ds.dev.imp_id).size == 0:
        return {"train": "", "dev": ""}
    return {"train": "train-", "dev": "dev-"}


def _log_order(ds: Dataset) -> list[tuple[str, Split, int]]:
    """(split name, split, impression index) of every impression, by time (ties keep train then file order)."""
    named = (("train", ds.train), ("dev", ds.dev))
    t = np.concatenate([s.imp_t for _, s in named])
    which = np.concatenate([np.full(s.imp_t.size, j) for j, (_, s) in enumerate(named)])
    local = np.concatenate([np.arange(s.imp_t.size) for _, s in named])
    order = np.argsort(t, kind="stable")
    return [(named[which[k]][0], named[which[k]][1], int(local[k])) for k in order]


def _seeds(ds: Dataset, order: list[tuple[str, Split, int]]) -> list[HistorySeed]:
    """Each reader's history column at their first impression: what they clicked before the log."""
    ids, seeds, seen = ds.articles.news_ids, [], set()
    for _, split, i in order:
        user = str(split.imp_user[i])
        if user not in seen:
            seen.add(user)
            row = split.history[i]
            seeds.append(HistorySeed(user, tuple(str(ids[r]) for r in row[row >= 0]), int(split.history_len[i])))
    return seeds


def _updates(ds: Dataset, order: list[tuple[str, Split, int]], origin_s: float, prior: tuple[float, ...]):
    """Yield (impression update, click updates) per impression, times in Unix seconds."""
    a = ds.articles
    ids, subs, cats = a.news_ids.tolist(), a.subcategory_name.tolist(), a.category_name.tolist()
    prefixes = _event_prefixes(ds)
    starts = {id(s): np.searchsorted(s.row_imp, np.arange(s.imp_t.size + 1)) for s in (ds.train, ds.dev)}
    for name, split, i in order:
        lo, hi = starts[id(split)][i], starts[id(split)][i + 1]
        user, t, imp_id = str(split.imp_user[i]), origin_s + float(split.imp_t[i]), int(split.imp_id[i])
        rows = sorted(range(lo, hi), key=lambda r: split.row_pos[r])
        shown = tuple((ids[split.row_item[r]], subs[split.row_item[r]], cats[split.row_item[r]],
                       int(split.row_pos[r])) for r in rows)
        imp = ImpressionUpdate(f"imp-{prefixes[name]}{imp_id}", user, shown, t, prior)
        clicks = [ClickUpdate(f"click-{prefixes[name]}{imp_id}-{split.row_pos[r]}", user, *shown[k][:3], t)
                  for k, r in enumerate(rows) if split.row_label[r] == 1]
        yield imp, clicks


def _items(ds: Dataset, origin_s: float, titles: Mapping[str, str]) -> list[ItemFeatures]:
    a = ds.articles
    return [ItemFeatures(str(n), str(c), str(s), titles.get(str(n), ""), origin_s + float(p), origin_s + float(e))
            for n, c, s, p, e in zip(a.news_ids, a.category_name, a.subcategory_name, a.publish_s, a.expire_s)]


async def materialize(store: FeatureStore, ds: Dataset, spec: FeatureSpec, now_s: float | None = None,
                      limit_impressions: int | None = None, titles: Mapping[str, str] | None = None,
                      batch_updates: int = BATCH_UPDATES, concurrency: int = 2) -> dict:
    """Put every article, seed every reader's prior history, then replay the log (impressions strictly before
    now_s, Unix seconds; all when None; at most limit_impressions) in time order: each impression, then its clicks.

    The store keeps Unix seconds: dataset times (seconds from ds.origin, read as UTC) are shifted by the origin.
    Idempotent: re-running applies nothing twice (event ids). Returns counts, seconds and events/s.
    """
    if not spec.position_prior:
        raise ValueError("spec.position_prior is empty: expected clicks need the served model's position prior")
    if batch_updates < 1 or concurrency < 1:
        raise ValueError(f"batch_updates and concurrency must be >= 1, got {batch_updates}, {concurrency}")
    origin_s = ds.origin.timestamp()
    started = time.perf_counter()
    items = _items(ds, origin_s, titles or {})
    for s in range(0, len(items), batch_updates):
        await store.put_items(items[s:s + batch_updates])
    order = _log_order(ds)
    seeds = _seeds(ds, order)
    for s in range(0, len(seeds), batch_updates):
        await store.apply_updates(seeds[s:s + batch_updates])
    if now_s is not None:
        order = [o for o in order if origin_s + float(o[1].imp_t[o[2]]) < now_s]
    order = order[:limit_impressions]
    seeded_s = time.perf_counter()
    stats = {"items": len(items), "seeded_users": len(seeds), "impressions": 0, "clicks": 0, "applied": 0,
             "duplicates": 0}
    # One batch in flight per shard of readers: Python builds the next batches while Redis runs the scripts of
    # the previous ones. A reader's events stay in order (their history list depends on it); an item's counters
    # may see events out of order across shards, which the decayed-counter update handles exactly.
    inflight: list[asyncio.Task | None] = [None] * concurrency

    async def apply(batch: list[FeatureUpdate]) -> None:
        applied = await store.apply_updates(batch)
        stats["applied"] += sum(applied)
        stats["duplicates"] += len(applied) - sum(applied)

    async def send(k: int, batch: list[FeatureUpdate]) -> None:
        if inflight[k] is not None:
            await inflight[k]  # the shard's previous batch first; raises its error
        inflight[k] = asyncio.create_task(apply(batch))

    try:
        shards: list[list[FeatureUpdate]] = [[] for _ in range(concurrency)]
        for imp, clicks in _updates(ds, order, origin_s, tuple(spec.position_prior)):
            k = zlib.crc32(imp.user_id.encode()) % concurrency
            shards[k].append(imp)
            shards[k].extend(clicks)
            stats["impressions"] += 1
            stats["clicks"] += len(clicks)
            if len(shards[k]) >= batch_updates:
                await send(k, shards[k])
                shards[k] = []
        for k, batch in enumerate(shards):
            if batch:
                await send(k, batch)
        await asyncio.gather(*(t for t in inflight if t is not None))
    finally:
        for t in inflight:
            if t is not None and not t.done():
                t.cancel()
    done = time.perf_counter()
    events = stats["impressions"] + stats["clicks"]
    stats.update(events=events, seed_seconds=round(seeded_s - started, 3), replay_seconds=round(done - seeded_s, 3),
                 events_per_s=round(events / max(done - seeded_s, 1e-9), 1))
    log.info("materialized %s", stats)
    return stats


def read_titles(world_dir: Path) -> dict[str, str]:
    """news_id -> title from every news.tsv under world_dir's split directories."""
    titles: dict[str, str] = {}
    for path in sorted(Path(world_dir).glob(f"*/{NEWS_FILE}")):
        news = mind.read_news_table(path)
        titles.update(zip(news["news_id"], news["title"]))
    return titles


def materialize_world(world_dir: Path | str, redis_url: str, prefix: str, limit_impressions: int | None = None,
                      now_s: float | None = None, spec: FeatureSpec | None = None) -> dict:
    """Load a MIND-format world into Redis under `prefix` (the CLI's entry point; runs its own event loop).

    spec: the served model's FeatureSpec (its position_prior weighs expected clicks); by default the position
    prior is computed from the world's train split as training does (recsys.ranking_data.position_prior).
    """
    ds = load_dataset(Path(world_dir))
    if spec is None:
        spec = FeatureSpec(categories=(), subcategories=(), position_prior=position_prior(ds.train))

    async def run() -> dict:
        store = RedisFeatureStore(redis_url, prefix, history_len=spec.history_len, socket_timeout_ms=30_000,
                                  connect_timeout_ms=5_000)
        try:
            return await materialize(store, ds, spec, now_s=now_s, limit_impressions=limit_impressions,
                                     titles=read_titles(Path(world_dir)))
        finally:
            await store.close()

    return asyncio.run(run())
