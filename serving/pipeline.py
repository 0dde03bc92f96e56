"""The request path, top to bottom: user features >> user tower >> live index >> drop seen >> ranker >> rules.

Degrades instead of failing: the store down or slow -> trending list; too little budget left for the ranker ->
retrieval order. Every answer says which path served it (`source`) and why it degraded (`degraded`).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from feature_store.base import FeatureStore
from serving.backends.base import InferenceBackend
from serving.index import LiveIndex
from serving.item_table import ItemTable
from serving.online_features import Candidates, online_ranker_features
from serving.rules import apply_rules

STORE_ERRORS = (TimeoutError, ConnectionError, OSError)  # plus the store's own, added by the app's settings


@dataclass(frozen=True)
class PipelineSettings:
    retrieval_k: int = 500
    category_cap: int = 3
    freshness_boost: float = 0.3
    freshness_tau_h: float = 6.0
    ranker_min_budget_ms: float = 10.0  # skip the ranker when less than this is left
    # the naive baseline of `newsrec bench serve`: candidate labels from a per-request store read (an MGET-like
    # call for 500 items) instead of the in-process item table
    item_features_from_store: bool = False


@dataclass(frozen=True)
class Recommendation:
    news_ids: list[str]
    scores: list[float]
    source: str                  # "ranked" | "retrieval" | "trending" | "cold_start"
    model_version: str
    index_version: int
    timings_ms: dict[str, float]
    degraded: tuple[str, ...] = ()


@dataclass
class Pipeline:
    store: FeatureStore
    backend: InferenceBackend
    index: LiveIndex
    items: ItemTable
    model_version: str
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    store_errors: tuple[type[BaseException], ...] = STORE_ERRORS


class _Clock:
    def __init__(self, deadline_s: float):
        self.deadline_s, self.timings, self._t = deadline_s, {}, time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round((now - self._t) * 1e3, 3)
        self._t = now

    def left_ms(self) -> float:
        return (self.deadline_s - time.perf_counter()) * 1e3


def trending(p: Pipeline, k: int, now_s: float) -> tuple[list[str], list[float]]:
    """Most-clicked live articles (the index's own counters: no store call), category-capped."""
    s = p.index.snapshot
    live = np.nonzero((s.publish_s <= now_s) & (s.expire_s > now_s))[0]
    cats = p.items.snapshot.labels(p.items.snapshot.rows(s.news_ids[live]), "category")
    return apply_rules(list(s.news_ids[live]), np.log1p(s.clicks_6h[live]), cats,
                       (now_s - s.publish_s[live]) / 3600.0, k, p.settings.category_cap, 0.0, 1.0)


def _answer(p: Pipeline, clock: _Clock, source: str, picked: tuple[list[str], list[float]], *degraded: str
            ) -> Recommendation:
    clock.lap("rules")
    return Recommendation(picked[0], picked[1], source, p.model_version, p.index.snapshot.version, clock.timings,
                          tuple(degraded))


async def recommend(p: Pipeline, user_id: str, k: int, now_s: float, deadline_s: float) -> Recommendation:
    """Top-k for `user_id` at `now_s` (Unix seconds), finishing by `deadline_s` (time.perf_counter())."""
    clock, cfg = _Clock(deadline_s), p.settings
    try:
        user = await asyncio.wait_for(p.store.get_user(user_id, now_s), max(clock.left_ms(), 1.0) / 1e3)
    except p.store_errors:
        clock.lap("features")
        return _answer(p, clock, "trending", trending(p, k, now_s), "store_unavailable")
    clock.lap("features")
    if not user.history:
        return _answer(p, clock, "cold_start", trending(p, k, now_s))
    table = p.items.snapshot
    hist_rows = table.rows(user.history)
    known = hist_rows[hist_rows >= 0][: p.backend.spec.history_len]
    user_vec = p.backend.user_vectors(known[None, :], table.vectors)[0]
    clock.lap("user_tower")
    ids, sims, _ = p.index.search(user_vec, cfg.retrieval_k, now_s, exclude=frozenset(user.history))
    clock.lap("retrieval")
    rows = table.rows(ids)
    ids, sims, rows = ids[rows >= 0], sims[rows >= 0], rows[rows >= 0]  # the index never outruns the table
    cats, ages = table.labels(rows, "category"), (now_s - table.publish_s[np.maximum(rows, 0)]) / 3600.0
    if clock.left_ms() < cfg.ranker_min_budget_ms:
        return _answer(p, clock, "retrieval", apply_rules(list(ids), sims, cats, ages, k, cfg.category_cap,
                                                          cfg.freshness_boost, cfg.freshness_tau_h), "deadline")
    try:
        counters = await asyncio.wait_for(p.store.get_item_counters(tuple(ids), now_s), clock.left_ms() / 1e3)
    except p.store_errors:
        return _answer(p, clock, "retrieval", apply_rules(list(ids), sims, cats, ages, k, cfg.category_cap,
                                                          cfg.freshness_boost, cfg.freshness_tau_h),
                       "store_unavailable")
    subs = table.labels(rows, "subcategory")
    if cfg.item_features_from_store:
        stored = await p.store.get_item_features(tuple(ids))
        subs = np.array([f.subcategory if f else "" for f in stored], dtype=object)
        cats = np.array([f.category if f else "" for f in stored], dtype=object)
    cand = Candidates(tuple(ids), table.vectors[rows], subs, cats, table.publish_s[rows])
    features = online_ranker_features(p.backend.spec, user, user_vec, cand, counters,
                                      table.labels(hist_rows, "subcategory"), table.labels(hist_rows, "category"),
                                      now_s)
    clock.lap("features_items")
    scores = p.backend.rank(features)
    clock.lap("ranker")
    return _answer(p, clock, "ranked", apply_rules(list(ids), scores, cats, ages, k, cfg.category_cap,
                                                   cfg.freshness_boost, cfg.freshness_tau_h))
