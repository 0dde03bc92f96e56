"""The live article index: exact against brute force, freshness, exclusion, and consistency under concurrency."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from recsys.retrieval import retrieval_scores
from serving.index import LiveIndex

D = 8


def _pool(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, D)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = np.array([f"N{i}" for i in range(n)], dtype=object)
    publish = rng.uniform(0, 100, n)
    return ids, v, publish, publish + rng.uniform(50, 200, n)


def test_search_equals_brute_force_over_live_articles_with_the_popularity_dimension():
    ids, v, pub, exp = _pool(500)
    index = LiveIndex(D, popularity_weight=0.3)
    index.upsert(ids, v, pub, exp)
    clicks = np.random.default_rng(1).poisson(3, 500).astype(float)
    index.set_popularity(ids, clicks)
    u = v[7]
    now = 120.0
    got, scores, _ = index.search(u, 20, now)
    live = (pub <= now) & (exp > now)
    brute = retrieval_scores(v[live], clicks[live], u, 0.3)
    want = ids[live][np.argsort(-brute)[:20]]
    assert list(got) == list(want)
    np.testing.assert_allclose(scores, np.sort(brute)[::-1][:20], rtol=1e-5)


def test_expired_unpublished_and_excluded_articles_are_never_returned():
    ids, v, pub, exp = _pool(300)
    index = LiveIndex(D)
    index.upsert(ids, v, pub, exp)
    now = 150.0
    exclude = frozenset(ids[:100])
    got, _, _ = index.search(v[0], 300, now, exclude)
    assert got.size > 0
    rows = [int(n[1:]) for n in got]
    assert all(pub[r] <= now < exp[r] for r in rows) and not set(got) & exclude
    removed = index.expire(now)
    assert removed == int((exp <= now).sum()) and index.snapshot.size == 300 - removed


def test_upsert_replaces_and_remove_deletes():
    ids, v, pub, exp = _pool(10)
    index = LiveIndex(D)
    index.upsert(ids, v, pub, exp)
    index.upsert(ids[:2], -v[:2], pub[:2], exp[:2])
    assert index.snapshot.size == 10
    assert index.remove(["N0", "N9", "missing"]) == 2 and "N0" not in set(index.snapshot.news_ids)
    with pytest.raises(ValueError, match="shape"):
        index.upsert(["N1"], np.zeros((1, D + 1)), [0.0], [1.0])


def test_searches_during_concurrent_adds_and_removes_always_see_a_whole_pool():
    ids, v, pub, exp = _pool(2_000)
    index = LiveIndex(D)
    index.upsert(ids[:1000], v[:1000], np.zeros(1000), np.full(1000, 1e9))
    errors, stop = [], threading.Event()

    def writer():
        for i in range(1000, 2000, 50):
            index.upsert(ids[i:i + 50], v[i:i + 50], np.zeros(50), np.full(50, 1e9))
            index.remove(ids[i - 1000:i - 950])
        stop.set()

    def reader():
        try:
            while not stop.is_set():
                snap_before = index.snapshot.version
                got, _, version = index.search(v[1500], 50, 1.0)
                assert version >= snap_before and len(got) == 50 and len(set(got)) == 50
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and index.snapshot.size == 1000
