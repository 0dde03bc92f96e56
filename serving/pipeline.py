"""The request path, top to bottom: user features >> user tower >> live index >> drop seen >> ranker >> rules.

Degrades instead of failing: the store down or slow -> trending list; too little budget left for the ranker ->
retrieval order. Every answer says which path served it (`source`) and why it degraded (`degraded`).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from feature_store.base import FeatureStore, ItemCounters, UserFeatures
from serving.backends.base import InferenceBackend
from serving.batching import MicroBatcher, concat_rows
from serving.index import BLAS_FROM_QUERIES, IndexSnapshot, LiveIndex
from serving.loop_turns import LoopTurns
from recsys.item_table import ItemTable, ItemTableSnapshot
from recsys.online_features import Candidates, online_ranker_features
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
    micro_batch_wait_ms: float = 0.0    # user tower + search; 0: every request calls alone (serving.batching)
    ranker_batch_wait_ms: float = 0.0
    model_thread: bool = False          # model calls on one thread of their own, not the event loop
    loop_turns: bool = False            # one request's CPU stretch per loop iteration (serving.loop_turns)


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
    """Requests in flight and the micro-batchers, which wait only for requests still upstream of their stage.
    Shared across hot swaps (batches never mix model versions: see serving.batching)."""

    STAGES = ("retrieval", "ranker")

    def __init__(self, retrieval_wait_ms: float = 0.0, ranker_wait_ms: float = 0.0, model_thread: bool = False,
                 loop_turns: bool = False, off_loop_now: Callable[[], bool] = lambda: True):
        """model_thread, loop_turns: the surge options, applied while off_loop_now() (serving.shed_window)."""
        self.upstream = dict.fromkeys(self.STAGES, 0)  # requests that have not reached the stage (yet)
        self.executor = ex = ThreadPoolExecutor(1, thread_name_prefix="newsrec-model") if model_thread else None
        # user tower + search: the search pays from BLAS_FROM_QUERIES queries (one pass over the pool for all)
        self.retrieval = MicroBatcher(retrieval_wait_ms, lambda: self.upstream["retrieval"], BLAS_FROM_QUERIES, ex,
                                      off_loop_now)
        self.ranker = MicroBatcher(ranker_wait_ms, lambda: self.upstream["ranker"], executor=ex, offload=off_loop_now)
        self.turns = LoopTurns() if loop_turns else None
        self.off_loop_now = off_loop_now

    async def turn(self) -> None:
        if self.turns is not None and self.off_loop_now():
            await self.turns.take()

    def start(self) -> set[str]:
        """A new request: upstream of every stage. Returns its ticket (the stages it has not reached)."""
        for stage in self.STAGES:
            self.upstream[stage] += 1
        return set(self.STAGES)

    def reach(self, ticket: set[str], stage: str) -> None:
        ticket.discard(stage)
        self.upstream[stage] -= 1

    def finish(self, ticket: set[str]) -> None:
        for stage in list(ticket):
            self.reach(ticket, stage)

    def close(self) -> None:
        """At shutdown, after the last request: stop the model thread (model calls take milliseconds)."""
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


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
    off_loop_now: Callable[[], bool] = lambda: True  # when the surge options apply (serving.shed_window)

    def __post_init__(self) -> None:
        if self.in_flight is None:
            self.in_flight = InFlight(self.settings.micro_batch_wait_ms, self.settings.ranker_batch_wait_ms,
                                      self.settings.model_thread, self.settings.loop_turns, self.off_loop_now)


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
    # the index may hold articles added after this request took its table snapshot (the stream adds to the table
    # first, then the index): those rows are past the snapshot's end and read as unknown for this one request
    item_rows = np.where(s.item_rows[rows] < table.vectors.shape[0], s.item_rows[rows], -1)
    unknown = item_rows < 0
    if unknown.any():
        item_rows[unknown] = table.rows(s.news_ids[rows[unknown]])
    return item_rows, table.topic_codes(item_rows, "category")


def _answer(p: Pipeline, clock: _Clock, source: str, picked: tuple[list[str], list[float]], *degraded: str
            ) -> Recommendation:
    clock.lap("rules")
    return Recommendation(picked[0], picked[1], source, p.model_version, p.index.snapshot.version, clock.timings,
                          tuple(degraded))


@dataclass(frozen=True)
class _Candidates:
    """Retrieved articles, best first: index rows of snapshot `s`, item-table rows, scores and what rules need."""

    s: IndexSnapshot
    idx: np.ndarray
    rows: np.ndarray
    sims: np.ndarray
    categories: np.ndarray   # topic codes
    ids: tuple[str, ...]
    age_h: np.ndarray


async def _retrieve(p: Pipeline, table: ItemTableSnapshot, hist_rows: np.ndarray, now_s: float, clock: _Clock,
                    ticket: set[str]) -> tuple[np.ndarray, _Candidates]:
    """User tower >> live index >> drop seen: (user vector, up to retrieval_k candidates). The user tower and the
    search run as one micro-batched call when batching is on."""
    backend, spec = p.backend, p.backend.spec
    history = np.full((1, spec.history_len), -1, np.int64)  # padded: batched and lone calls see the same input
    known = hist_rows[hist_rows >= 0][: spec.history_len]
    history[0, :known.size] = known
    want = p.settings.retrieval_k + spec.history_len  # the reader's own history is dropped after the search

    def user_tower_and_search(calls: list[tuple[np.ndarray, float]]) -> list:
        t0 = time.perf_counter()
        vecs = backend.user_vectors(np.concatenate([h for h, _ in calls]), table.vectors)
        tower_ms = (time.perf_counter() - t0) * 1e3
        hits, snap = p.index.search_batch(vecs, want, np.array([t for _, t in calls]))
        return [(v, idx, sims, snap, tower_ms) for v, (idx, sims) in zip(vecs, hits)]

    p.in_flight.reach(ticket, "retrieval")
    user_vec, idx, sims, s, tower_ms = await p.in_flight.retrieval.run((backend, table, p.index),
                                                                       user_tower_and_search, (history, now_s))
    clock.lap_split("user_tower", tower_ms, "retrieval")
    # a batch wakes many requests at once: their next stretches run one per loop iteration (the wait for a turn
    # is timed into the next stage)
    await p.in_flight.turn()
    rows, cats = _table_rows(s, idx, table)
    # drop seen articles, and rows -1 (the index never outruns the table); a mask over the table's rows, as
    # np.isin sorts both arrays (~10x slower at these sizes)
    seen = np.zeros(len(table.publish_s) + 1, bool)
    seen[hist_rows] = True
    seen[-1] = False  # where rows -1 land
    keep = (rows >= 0) & ~seen[rows]
    idx, sims, rows, cats = (a[keep][: p.settings.retrieval_k] for a in (idx, sims, rows, cats))
    return user_vec, _Candidates(s, idx, rows, sims, cats, tuple(s.news_ids[idx].tolist()),
                                 (now_s - s.publish_s[idx]) / 3600.0)


async def _counters(p: Pipeline, c: _Candidates, now_s: float, left_ms: float) -> ItemCounters:
    """The candidates' counters: from the pool's in-process copy, or one store read (naive baseline; the first
    seconds after a model swap, before the refresh loop has filled the new index)."""
    if c.s.counters is not None and not p.settings.item_features_from_store:
        return c.s.counters.at(c.idx, c.ids, now_s)
    async with asyncio.timeout(left_ms / 1e3):
        return await p.store.get_item_counters(c.ids, now_s)


async def _features(p: Pipeline, table: ItemTableSnapshot, user: UserFeatures, user_vec: np.ndarray,
                    c: _Candidates, hist_rows: np.ndarray, counters: ItemCounters, now_s: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(ranker features, candidates' categories for the rules) from the item table's topic codes; the naive
    baseline reads candidates' topics from the store instead (then rules cap categories by those names)."""
    if p.settings.item_features_from_store:
        stored = await p.store.get_item_features(c.ids)
        subs = np.array([f.subcategory if f else "" for f in stored], dtype=object)
        cats = np.array([f.category if f else "" for f in stored], dtype=object)
        cand = Candidates(c.ids, c.s.vectors[c.idx], subs, cats, c.s.publish_s[c.idx])
        return online_ranker_features(p.backend.spec, user, user_vec, cand, counters,
                                      table.labels(hist_rows, "subcategory"), table.labels(hist_rows, "category"),
                                      now_s), cats
    cand = Candidates(c.ids, c.s.vectors[c.idx], table.topic_codes(c.rows, "subcategory"), c.categories,
                      c.s.publish_s[c.idx])
    return online_ranker_features(p.backend.spec, user, user_vec, cand, counters,
                                  table.topic_codes(hist_rows, "subcategory"), table.topic_codes(hist_rows, "category"),
                                  now_s, vocab=table.vocab), c.categories


async def recommend(p: Pipeline, user_id: str, k: int, now_s: float, deadline_s: float) -> Recommendation:
    """Top-k for `user_id` at `now_s` (Unix seconds), finishing by `deadline_s` (time.perf_counter())."""
    ticket = p.in_flight.start()
    try:
        return await _recommend(p, user_id, k, now_s, deadline_s, ticket)
    finally:
        p.in_flight.finish(ticket)


async def _recommend(p: Pipeline, user_id: str, k: int, now_s: float, deadline_s: float, ticket: set[str]
                     ) -> Recommendation:
    clock, cfg = _Clock(deadline_s), p.settings
    try:
        async with asyncio.timeout(max(clock.left_ms(), 1.0) / 1e3):
            user = await p.store.get_user(user_id, now_s)
    except p.store_errors:
        clock.lap("features")
        return _answer(p, clock, "trending", trending(p, k, now_s), "store_unavailable")
    clock.lap("features")
    if not user.history:
        return _answer(p, clock, "cold_start", trending(p, k, now_s))
    table = p.items.snapshot
    hist_rows = table.rows(user.history)
    user_vec, c = await _retrieve(p, table, hist_rows, now_s, clock, ticket)

    def pick(scores: np.ndarray, categories: np.ndarray = c.categories) -> tuple[list[str], list[float]]:
        return apply_rules(c.ids, scores, categories, c.age_h, k, cfg.category_cap, cfg.freshness_boost,
                           cfg.freshness_tau_h, ids_unique=True)  # rows of one index snapshot

    if clock.left_ms() < cfg.ranker_min_budget_ms:
        return _answer(p, clock, "retrieval", pick(c.sims), "deadline")
    try:
        counters = await _counters(p, c, now_s, clock.left_ms())
    except p.store_errors:
        return _answer(p, clock, "retrieval", pick(c.sims), "store_unavailable")
    features, categories = await _features(p, table, user, user_vec, c, hist_rows, counters, now_s)
    clock.lap("features_items")
    p.in_flight.reach(ticket, "ranker")
    scores = await p.in_flight.ranker.run((p.backend,), concat_rows(p.backend.rank), features)
    clock.lap("ranker")
    await p.in_flight.turn()
    return _answer(p, clock, "ranked", pick(scores, categories))
