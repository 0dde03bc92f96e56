"""The live article pool for retrieval: FAISS inner-product search over articles inside their lifetime, exact for
pools under IVF_MIN_ARTICLES, inverted-file (serving.ivf, recall-calibrated) above.

Copy-on-write: every change (new articles, removals, expiry, counter refresh) builds a new immutable snapshot and
swaps one reference, so a search never sees a half-applied change and never takes a lock. At 10^4-10^5 articles
of 65 dims a rebuild is a few milliseconds (IVF lists are kept per article, never re-assigned); both support
add/remove (HNSW cannot remove ids). Index vectors carry one extra dimension, w * log1p(recent clicks), read
with weight 1 by queries.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np

from feature_store.base import ItemCounters
from recsys.retrieval import augment_items, augment_users
from serving.item_counters import CLICKS_6H, PoolCounters
from serving.ivf import IVF_MIN_ARTICLES, RECHECK_S, IvfQuantizer, IvfStats
from recsys.item_table import ItemTable

TRENDING_PREFIX = 512  # trending answers are picked from the most-clicked rows first (see trending_rows)
# Exact search is memory-bound (the whole pool is read per query: 13 MB at 50k x 65). FAISS's BLAS path reads it
# once per batch but costs more per call; measured here (1 thread, 50k, k=566): 0.63 ms/query on the default path
# whatever the batch, 2.1 ms alone on BLAS, 0.5 ms/query at 4 queries, 0.35 at 8. So BLAS from 4 queries on.
BLAS_FROM_QUERIES = 4


@contextmanager
def _blas_if(use: bool):
    """FAISS picks its path by a process-wide threshold; only the event loop thread searches, so setting it around
    one call is safe (index writers never search)."""
    if not use:
        yield
        return
    default = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 1
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = default


@dataclass(frozen=True)
class IndexSnapshot:
    """An immutable pool: row i of every array is one article; `index` holds the augmented vectors."""

    version: int
    news_ids: np.ndarray     # (n,) str
    vectors: np.ndarray      # (n, D) float32 content vectors from the item tower
    clicks_6h: np.ndarray    # (n,) decayed recent clicks behind the bias dimension
    publish_s: np.ndarray    # (n,) float, epoch seconds
    expire_s: np.ndarray
    item_rows: np.ndarray    # (n,) int64 row in the item table, -1 where the index was given none
    counters: PoolCounters | None  # the pool's counters from the last refresh; None until the first one
    index: faiss.Index
    by_clicks: np.ndarray    # rows by clicks_6h, most first (stable): the trending order
    lists: np.ndarray        # (n,) int64 IVF list of each row; -1 while the index has no quantizer
    exhaustive: object = None  # search parameters that make `index` exact (IVF: every list), None when it is

    @property
    def size(self) -> int:
        return int(self.news_ids.size)

    def live(self, rows: np.ndarray, now_s: float) -> np.ndarray:
        return (self.publish_s[rows] <= now_s) & (self.expire_s[rows] > now_s)


def _build(version: int, news_ids, vectors, clicks, publish, expire, item_rows, lists, counters, weight: float,
           ivf: IvfQuantizer | None = None) -> IndexSnapshot:
    """ivf: build an IVF index over the rows' lists; None: exact."""
    augmented = augment_items(vectors, clicks, weight) if len(news_ids) else None
    if ivf is not None:
        index, exhaustive = ivf.build(augmented, lists), faiss.SearchParametersIVF(nprobe=ivf.lists)
    else:
        index, exhaustive = faiss.IndexFlatIP(vectors.shape[1] + 1), None
        if augmented is not None:
            index.add(augmented)
    by_clicks = np.argsort(-np.log1p(clicks), kind="stable")
    return IndexSnapshot(version, news_ids, vectors, clicks, publish, expire, item_rows, counters, index, by_clicks,
                         lists, exhaustive)


def _member(pool_ids: np.ndarray, news_ids) -> np.ndarray:
    """pool_ids in news_ids, by a set: np.isin on object arrays compares every pair (a 1,000-article batch against
    a 12k pool: 112 ms; this: under 1 ms), and the stream upserts batches into the pool continuously."""
    wanted = set(news_ids)
    return np.fromiter((n in wanted for n in pool_ids), dtype=bool, count=len(pool_ids))


class LiveIndex:
    """Articles that may be recommended now. Writers serialize on a lock; readers take the current snapshot.

    items: the item table whose rows upserted articles are looked up in (once, at write time), so the request path
    maps candidates to table rows with a gather; without one, rows read -1 and callers resolve ids themselves.
    """

    def __init__(self, dim: int, popularity_weight: float = 0.0, items: ItemTable | None = None,
                 ivf_min_articles: int = IVF_MIN_ARTICLES):
        self.dim, self.popularity_weight, self.items = dim, popularity_weight, items
        self.ivf_min_articles = ivf_min_articles
        self._ivf: IvfQuantizer | None = None  # trained when the pool first reaches ivf_min_articles
        self._queries: np.ndarray | None = None  # IVF calibration queries (augmented user vectors)
        self._calibrate: str | None = None  # "full" | "check": recalibrate nprobe on the next rebuild
        self._checked_at = -RECHECK_S
        self._write = threading.Lock()
        self._snap = _build(0, np.array([], dtype=object), np.zeros((0, dim), np.float32), np.zeros(0),
                            np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), None,
                            popularity_weight)

    @property
    def ivf_stats(self) -> IvfStats | None:
        """The IVF's lists, nprobe and measured recall@k against exact search; None while the index is exact."""
        return self._ivf.stats if self._ivf is not None else None

    def set_calibration_queries(self, user_vecs: np.ndarray) -> None:
        """Reader vectors (n, D) against which IVF's nprobe is chosen (recall@k vs exact >= serving.ivf's
        target), now and at every counter refresh (the popularity dimension moves articles between scores)."""
        with self._write:
            self._queries = augment_users(np.asarray(user_vecs, np.float32))
            self._calibrate = "full"
            s = self._snap
            self._swap(np.ones(s.size, dtype=bool))

    @property
    def snapshot(self) -> IndexSnapshot:
        return self._snap

    def _swap(self, keep: np.ndarray, add: tuple | None = None, clicks: np.ndarray | None = None,
              counters: PoolCounters | None = None) -> None:
        s, w = self._snap, self.popularity_weight
        parts = [s.news_ids[keep], s.vectors[keep], (s.clicks_6h if clicks is None else clicks)[keep],
                 s.publish_s[keep], s.expire_s[keep], s.item_rows[keep], s.lists[keep]]
        counters = counters if counters is not None else s.counters
        counters = None if counters is None else counters.take(keep)
        if add is not None:
            new_lists = (self._ivf.assign(augment_items(add[1], add[2], w)) if self._ivf is not None
                         else np.full(len(add[0]), -1, np.int64))
            parts = [np.concatenate([p, a]) for p, a in zip(parts, (*add, new_lists))]
            counters = None if counters is None else counters.extended(len(add[0]))
        n = len(parts[0])
        if self._ivf is None and n >= self.ivf_min_articles:  # once per index: lists for every row from here on
            augmented = augment_items(parts[1], parts[2], w)
            self._ivf = IvfQuantizer(augmented)
            parts[6] = self._ivf.assign(augmented)
            self._calibrate = "full"
        ivf = self._ivf if self._ivf is not None and n >= self.ivf_min_articles // 2 else None
        snap = _build(s.version + 1, *parts, counters, w, ivf)
        if ivf is not None and self._calibrate and self._queries is not None and snap.size:
            # before the swap: no search can be running on this index while nprobe changes
            exact = faiss.IndexFlatIP(self.dim + 1)
            exact.add(augment_items(snap.vectors, snap.clicks_6h, w))
            ivf.calibrate(snap.index, exact, self._queries, full=self._calibrate == "full")
            self._calibrate, self._checked_at = None, time.monotonic()
        self._snap = snap

    def upsert(self, news_ids, vectors: np.ndarray, publish_s: np.ndarray, expire_s: np.ndarray) -> None:
        """Add articles (or replace those with the same id, keeping their click count)."""
        news_ids = np.asarray(news_ids, dtype=object)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (news_ids.size, self.dim):
            raise ValueError(f"vectors shape {vectors.shape}, expected ({news_ids.size}, {self.dim})")
        item_rows = (self.items.snapshot.rows(news_ids) if self.items is not None
                     else np.full(news_ids.size, -1, np.int64))
        with self._write:
            s = self._snap
            replaced = _member(s.news_ids, news_ids)
            old = dict(zip(s.news_ids[replaced], s.clicks_6h[replaced]))
            clicks = np.array([old.get(n, 0.0) for n in news_ids], dtype=np.float64)
            self._swap(~replaced, (news_ids, vectors, clicks, np.asarray(publish_s, np.float64),
                                   np.asarray(expire_s, np.float64), item_rows))

    def remove(self, news_ids) -> int:
        with self._write:
            gone = _member(self._snap.news_ids, news_ids)
            if gone.any():
                self._swap(~gone)
            return int(gone.sum())

    def expire(self, now_s: float) -> int:
        """Drop every article whose lifetime ended by `now_s`; returns how many."""
        with self._write:
            gone = self._snap.expire_s <= now_s
            if gone.any():
                self._swap(~gone)
            return int(gone.sum())

    def _pool_rows(self, news_ids, read_from: IndexSnapshot | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(positions in news_ids, snapshot rows) of the ids that are in the pool. read_from: the snapshot whose
        news_ids these are, in order; if it is still current, no lookups at all."""
        s = self._snap
        if read_from is s and len(news_ids) == s.size:
            return np.arange(s.size), np.arange(s.size)
        if len(news_ids) == s.size and np.array_equal(np.asarray(news_ids, dtype=object), s.news_ids):
            return np.arange(s.size), np.arange(s.size)  # read from this very pool: no lookups
        where = {n: i for i, n in enumerate(s.news_ids)}
        pairs = [(j, where[n]) for j, n in enumerate(news_ids) if n in where]
        got = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        return got[:, 0], got[:, 1]

    def set_popularity(self, news_ids, clicks_6h: np.ndarray) -> None:
        """Refresh the bias dimension from the online counters (ids not in the pool are ignored)."""
        with self._write:
            src, dst = self._pool_rows(news_ids)
            clicks = self._snap.clicks_6h.copy()
            clicks[dst] = np.asarray(clicks_6h, np.float64)[src]
            self._swap(np.ones(self._snap.size, dtype=bool), clicks=clicks)

    def set_counters(self, counters: ItemCounters, t_ref_s: float | np.ndarray,
                     read_from: IndexSnapshot | None = None) -> None:
        """Refresh the pool's counters (read at t_ref_s, one time or one per row) and, from their 6 h clicks, the
        bias dimension. Articles not in `counters` read 0 until the next refresh; ids not in the pool are ignored.
        read_from: the snapshot whose ids were read, in order (then an unchanged pool needs no id lookups)."""
        with self._write:
            s = self._snap
            src, dst = self._pool_rows(counters.news_ids, read_from)
            pool, read = PoolCounters.zeros(s.size), PoolCounters.read_at(counters, t_ref_s)
            pool.values[dst], pool.t_ref_s[dst] = read.values[src], read.t_ref_s[src]
            if time.monotonic() - self._checked_at >= RECHECK_S:  # popularity moved: is recall still on target?
                self._calibrate = self._calibrate or "check"
            self._swap(np.ones(s.size, dtype=bool), clicks=pool.values[:, CLICKS_6H].copy(), counters=pool)

    def search_rows(self, user_vec: np.ndarray, k: int, now_s: float) -> tuple[np.ndarray, np.ndarray, IndexSnapshot]:
        """The top-k live articles for a user vector (D,): (snapshot rows, scores, the snapshot searched).

        Articles not yet published or already expired at `now_s` are filtered here, so one is never served
        between expiry sweeps; the search widens until k live ones are found (or the pool is exhausted).
        """
        hits, s = self.search_batch(np.asarray(user_vec, np.float32)[None, :], k, now_s)
        return hits[0][0], hits[0][1], s

    def search_batch(self, user_vecs: np.ndarray, k: int, now_s: float | np.ndarray
                     ) -> tuple[list[tuple[np.ndarray, np.ndarray]], IndexSnapshot]:
        """search_rows for (b, D) user vectors in one FAISS call: [(rows, scores)] per query, and the snapshot.
        now_s: one time for all, or each query's own (b,)."""
        s = self._snap  # one read: the whole search sees one consistent pool
        if s.size == 0 or k <= 0:
            return [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in user_vecs], s
        queries = augment_users(np.asarray(user_vecs, np.float32))
        want = min(s.size, k + 16)
        with _blas_if(len(queries) >= BLAS_FROM_QUERIES):
            scores, rows = s.index.search(queries, want)
        out, times = [], np.broadcast_to(np.asarray(now_s, np.float64), (len(queries),))
        for q, (r, sc) in enumerate(zip(rows, scores)):
            searched = want
            while True:
                ok = r >= 0
                r, sc = r[ok], sc[ok]
                live = s.live(r, float(times[q]))
                if live.sum() >= k or searched >= s.size:  # too many filtered out: widen the search, not the answer
                    out.append((r[live][:k], sc[live][:k]))
                    break
                searched = min(s.size, searched * 4)
                # IVF: the probed lists may hold too few live articles; the wider search reads every list
                sc, r = (a[0] for a in s.index.search(queries[q:q + 1], searched, params=s.exhaustive))
        return out, s

    def search(self, user_vec: np.ndarray, k: int, now_s: float, exclude: frozenset[str] = frozenset()
               ) -> tuple[np.ndarray, np.ndarray, int]:
        """Top-k live, unexcluded articles for a user vector (D,): (news_ids, scores, snapshot version)."""
        rows, scores, s = self.search_rows(user_vec, k + len(exclude), now_s)
        keep = ~np.isin(s.news_ids[rows], list(exclude)) if exclude else np.ones(rows.size, bool)
        return s.news_ids[rows[keep]][:k], scores[keep][:k], s.version

    def trending_rows(self, now_s: float, enough) -> tuple[np.ndarray, IndexSnapshot]:
        """Live rows in trending order: the most-clicked TRENDING_PREFIX first, and all of them only when
        `enough(snapshot, rows)` says the prefix cannot fill the answer (so the answer equals one over the whole
        pool)."""
        s = self._snap
        rows = s.by_clicks[:TRENDING_PREFIX]
        rows = rows[s.live(rows, now_s)]
        if s.size > TRENDING_PREFIX and not enough(s, rows):
            rows = s.by_clicks[s.live(s.by_clicks, now_s)]
        return rows, s
