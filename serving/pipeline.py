"""The request path, top to bottom: user features >> user tower >> live index >> drop seen >> ranker >> rules.

Degrades instead of failing: the store down or slow -> trending list; too little budget left for the ranker ->
retrieval order. Every answer says which path served it (`source`) and why it degraded (`degraded`).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from feature_store.base import FeatureStore, ItemCounters
from serving.backends.base import InferenceBackend
from serving.batching import MicroBatcher, concat_rows
from serving.index import IndexSnapshot, LiveIndex
from serving.item_table import ItemTable, ItemTableSnapshot
from serving.online_features import Candidates, online_ranker_features
from serving.rules import apply_rules, fills_with_cap

STORE_ERRORS = (TimeoutError, ConnectionError, OSError)  # plus the store's own, added by the app's settings


@dataclass(frozen=True)
class PipelineSettings:
    retrieval_k: int = 500
    category_cap: int = 3
    freshness_boost: float = 0.3
    freshness_tau_h: float = 6.0
    ranker_min_budget_ms: float = 10.0  # skip the ranker when less than this is left
    # the naive baseline of `newsrec bench serve`: candidate labels and counters from per-request store reads
    # (MGET-like calls for 500 items) instead of the in-process item table and pool counters
    item_features_from_store: bool = False
    micro_batch_wait_ms: float = 0.0    # 0: every request calls the models alone (see serving.batching)


@dataclass(frozen=True)
class Recommendation:
    news_ids: list[str]
    scores: list[float]
    source: str                  # "ranked" | "retrieval" | "trending" | "cold_start"
    model_version: str
    index_version: int
    timings_ms: dict[str, float]
    degraded: tuple[str, ...] = ()


class InFlight:
    """Requests between start and answer, and the micro-batchers that wait only for those. Shared across hot swaps
    (batches never mix model versions: see serving.batching)."""

    def __init__(self, max_wait_ms: float = 0.0):
        self.count = 0
        self.retrieval = MicroBatcher(max_wait_ms, lambda: self.count)  # user tower + index search
        self.ranker = MicroBatcher(max_wait_ms, lambda: self.count)


@dataclass
class Pipeline:
    store: FeatureStore
    backend: InferenceBackend
    index: LiveIndex
    items: ItemTable
    model_version: str
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    store_errors: tuple[type[BaseException], ...] = STORE_ERRORS
    in_flight: InFlight | None = None  # built from settings on first use

    def __post_init__(self) -> None:
        if self.in_flight is None:
            self.in_flight = InFlight(self.settings.micro_batch_wait_ms)


class _Clock:
    def __init__(self, deadline_s: float):
        self.deadline_s, self.timings, self._t = deadline_s, {}, time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round((now - self._t) * 1e3, 3)
        self._t = now

    def lap_split(self, first: str, first_ms: float, second: str) -> None:
        """A lap shared by two stages timed together (one batch call): `first` took first_ms, `second` the rest."""
        now = time.perf_counter()
        total_ms = (now - self._t) * 1e3
        self.timings[first] = round(min(first_ms, total_ms), 3)
        self.timings[second] = round(total_ms - self.timings[first], 3)
        self._t = now

    def left_ms(self) -> float:
        return (self.deadline_s - time.perf_counter()) * 1e3


def trending(p: Pipeline, k: int, now_s: float) -> tuple[list[str], list[float]]:
    """Most-clicked live articles (the index's own counters: no store call), category-capped."""
    cap, table = p.settings.category_cap, p.items.snapshot

    def categories(s: IndexSnapshot, rows: np.ndarray) -> np.ndarray:
        return _table_rows(s, rows, table)[1]

    rows, s = p.index.trending_rows(now_s, lambda s, r: fills_with_cap(categories(s, r), k, cap))
    return apply_rules(s.news_ids[rows].tolist(), np.log1p(s.clicks_6h[rows]), categories(s, rows),
                       (now_s - s.publish_s[rows]) / 3600.0, k, cap, 0.0, 1.0, ids_unique=True)


def _table_rows(s: IndexSnapshot, rows: np.ndarray, table: ItemTableSnapshot) -> tuple[np.ndarray, np.ndarray]:
    """(item-table rows, category codes) of index rows; ids the index holds no table row for are looked up."""
    item_rows = s.item_rows[rows]
    unknown = item_rows < 0
    if unknown.any():
        item_rows[unknown] = table.rows(s.news_ids[rows[unknown]])
    return item_rows, table.topic_codes(item_rows, "category")


def _answer(p: Pipeline, clock: _Clock, source: str, picked: tuple[list[str], list[float]], *degraded: str
            ) -> Recommendation:
    clock.lap("rules")
    return Recommendation(picked[0], picked[1], source, p.model_version, p.index.snapshot.version, clock.timings,
                          tuple(degraded))


async def _counters(p: Pipeline, s: IndexSnapshot, rows: np.ndarray, ids: tuple[str, ...], now_s: float,
                    left_ms: float) -> ItemCounters:
    """The candidates' counters: from the pool's in-process copy, or one store read (naive baseline; the first
    seconds after a model swap, before the refresh loop has filled the new index)."""
    if s.counters is not None and not p.settings.item_features_from_store:
        return s.counters.at(rows, ids, now_s)
    async with asyncio.timeout(left_ms / 1e3):
        return await p.store.get_item_counters(ids, now_s)


async def recommend(p: Pipeline, user_id: str, k: int, now_s: float, deadline_s: float) -> Recommendation:
    """Top-k for `user_id` at `now_s` (Unix seconds), finishing by `deadline_s` (time.perf_counter())."""
    p.in_flight.count += 1
    try:
        return await _recommend(p, user_id, k, now_s, deadline_s)
    finally:
        p.in_flight.count -= 1


async def _recommend(p: Pipeline, user_id: str, k: int, now_s: float, deadline_s: float) -> Recommendation:
    clock, cfg, batch = _Clock(deadline_s), p.settings, p.in_flight
    try:
        async with asyncio.timeout(max(clock.left_ms(), 1.0) / 1e3):
            user = await p.store.get_user(user_id, now_s)
    except p.store_errors:
        clock.lap("features")
        return _answer(p, clock, "trending", trending(p, k, now_s), "store_unavailable")
    clock.lap("features")
    if not user.history:
        return _answer(p, clock, "cold_start", trending(p, k, now_s))
    table, backend, spec = p.items.snapshot, p.backend, p.backend.spec
    hist_rows = table.rows(user.history)
    history = np.full((1, spec.history_len), -1, np.int64)  # padded: batched and lone calls see the same input
    known = hist_rows[hist_rows >= 0][: spec.history_len]
    history[0, :known.size] = known
    want = cfg.retrieval_k + spec.history_len  # the reader's own history is dropped after the search

    def user_tower_and_search(calls: list[tuple[np.ndarray, float]]) -> list:
        """One user-tower call and one index search for every caller in the batch."""
        t0 = time.perf_counter()
        vecs = backend.user_vectors(np.concatenate([h for h, _ in calls]), table.vectors)
        tower_ms = (time.perf_counter() - t0) * 1e3
        hits, snap = p.index.search_batch(vecs, want, np.array([t for _, t in calls]))
        return [(v, rows, scores, snap, tower_ms) for v, (rows, scores) in zip(vecs, hits)]

    user_vec, idx, sims, s, tower_ms = await batch.retrieval.run((backend, table, p.index), user_tower_and_search,
                                                                 (history, now_s))
    clock.lap_split("user_tower", tower_ms, "retrieval")
    rows, cats = _table_rows(s, idx, table)
    # drop seen articles, and rows -1 (the index never outruns the table); a mask over the table's rows, as
    # np.isin sorts both arrays (~10x slower at these sizes)
    seen = np.zeros(len(table.publish_s) + 1, bool)  # [-1] stays False
    seen[hist_rows] = True
    seen[-1] = False
    keep = (rows >= 0) & ~seen[rows]
    idx, sims, rows, cats = (a[keep][: cfg.retrieval_k] for a in (idx, sims, rows, cats))
    ids, ages = tuple(s.news_ids[idx].tolist()), (now_s - s.publish_s[idx]) / 3600.0

    def pick(scores: np.ndarray) -> tuple[list[str], list[float]]:
        return apply_rules(ids, scores, cats, ages, k, cfg.category_cap, cfg.freshness_boost, cfg.freshness_tau_h,
                           ids_unique=True)  # rows of one index snapshot

    if clock.left_ms() < cfg.ranker_min_budget_ms:
        return _answer(p, clock, "retrieval", pick(sims), "deadline")
    try:
        counters = await _counters(p, s, idx, ids, now_s, clock.left_ms())
    except p.store_errors:
        return _answer(p, clock, "retrieval", pick(sims), "store_unavailable")
    subs, hist_subs, hist_cats = (table.topic_codes(rows, "subcategory"), table.topic_codes(hist_rows, "subcategory"),
                                  table.topic_codes(hist_rows, "category"))
    vocab = table.vocab
    if cfg.item_features_from_store:
        stored = await p.store.get_item_features(ids)
        subs = np.array([f.subcategory if f else "" for f in stored], dtype=object)
        cats = np.array([f.category if f else "" for f in stored], dtype=object)
        hist_subs, hist_cats = table.labels(hist_rows, "subcategory"), table.labels(hist_rows, "category")
        vocab = None  # topics as names
    cand = Candidates(ids, s.vectors[idx], subs, cats, s.publish_s[idx])
    features = online_ranker_features(spec, user, user_vec, cand, counters, hist_subs, hist_cats, now_s,
                                      vocab=vocab)
    clock.lap("features_items")
    scores = await batch.ranker.run((backend,), concat_rows(backend.rank), features)
    clock.lap("ranker")
    return _answer(p, clock, "ranked", pick(scores))
