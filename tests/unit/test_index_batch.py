"""Batched index search (micro-batching, FAISS's BLAS path from 4 queries) answers each query as a lone search
does, also when most of the pool is filtered out and each query must widen its own search."""
from __future__ import annotations

import numpy as np

from serving.index import BLAS_FROM_QUERIES, LiveIndex

D = 8


def test_batched_search_equals_lone_searches_with_per_query_widening():
    rng = np.random.default_rng(0)
    n = 3_000
    ids = np.array([f"N{i}" for i in range(n)], dtype=object)
    v = rng.normal(size=(n, D)).astype(np.float32)
    publish = rng.uniform(0, 100, n)
    expire = publish + np.where(rng.random(n) < 0.9, 1.0, 500.0)  # at t=150 only ~10% are live
    index = LiveIndex(D, popularity_weight=0.2)
    index.upsert(ids, v, publish, expire)
    queries = rng.normal(size=(2 * BLAS_FROM_QUERIES, D)).astype(np.float32)
    now = np.full(len(queries), 150.0)
    now[1] = 40.0  # each query's own time
    hits, _ = index.search_batch(queries, 120, now)
    for q, (rows, scores) in enumerate(hits):
        lone_rows, lone_scores, _ = index.search_rows(queries[q], 120, float(now[q]))
        assert rows.size == 120 and np.array_equal(rows, lone_rows), q
        np.testing.assert_allclose(scores, lone_scores, rtol=1e-5)
