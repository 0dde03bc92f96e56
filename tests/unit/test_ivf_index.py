"""The live index above its IVF threshold: calibrated recall against exact search, freshness (new articles
searchable at once, expired ones never served), widening past the probed lists, and consistency under writes."""
from __future__ import annotations

import threading

import numpy as np

from serving.index import LiveIndex
from serving.ivf import RECALL_TARGET, recall_at

D = 16


def _clustered(n: int, seed: int = 0):
    """Unit vectors around 40 topics, like item-tower vectors (IVF is pointless on uniform noise)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(40, D))
    v = centers[rng.integers(40, size=n)] + 0.6 * rng.normal(size=(n, D))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return np.array([f"N{i}" for i in range(n)], dtype=object), v


def _ivf_index(n: int = 4_000, seed: int = 0) -> tuple[LiveIndex, np.ndarray, np.ndarray]:
    ids, v = _clustered(n, seed)
    index = LiveIndex(D, popularity_weight=0.1, ivf_min_articles=2_000)
    index.upsert(ids, v, np.zeros(n), np.full(n, 1e9))
    queries = _clustered(64, seed + 1)[1]
    index.set_calibration_queries(queries)
    return index, ids, v


def test_ivf_is_calibrated_to_the_recall_target_and_meets_it_on_fresh_queries():
    index, ids, v = _ivf_index()
    stats = index.ivf_stats
    assert stats is not None and stats.recall >= RECALL_TARGET and stats.nprobe < stats.lists
    s = index.snapshot
    assert s.exhaustive is not None  # an IVF snapshot
    queries = _clustered(50, seed=7)[1]
    hits, _ = index.search_batch(queries, 100, 1.0)
    exact = np.argsort(-(v @ queries.T), axis=0)[:100].T  # no clicks yet: the bias dimension is 0
    got = np.array([rows for rows, _ in hits])
    assert recall_at(exact, got, 100) >= RECALL_TARGET - 0.03  # other queries than the calibration ones


def test_new_articles_are_searchable_at_once_and_expired_or_removed_ones_never_returned():
    index, ids, v = _ivf_index()
    fresh = np.array(["N_new"], dtype=object)
    target = v[11] * -1.0  # far from most of the pool: found only if the new article is in its list
    index.upsert(fresh, target[None, :], np.zeros(1), np.full(1, 1e9))
    got, _, _ = index.search(target, 5, 1.0)
    assert got[0] == "N_new"
    index.upsert(ids[:1], v[:1], np.zeros(1), np.full(1, 5.0))  # N0 now expires at t=5
    index.remove(["N_new"])
    got, _, _ = index.search(v[0], 50, 10.0)
    assert "N0" not in set(got) and "N_new" not in set(got) and len(got) == 50


def test_a_mostly_expired_pool_widens_past_the_probed_lists():
    ids, v = _clustered(4_000)
    expire = np.where(np.arange(4_000) % 50 == 0, 1e9, 5.0)  # 80 live at t=10
    index = LiveIndex(D, ivf_min_articles=2_000)
    index.upsert(ids, v, np.zeros(4_000), expire)
    assert index.ivf_stats is not None
    got, _, _ = index.search(v[1], 80, 10.0)
    assert len(got) == 80 and {int(n[1:]) % 50 for n in got} == {0}


def test_counter_refresh_rechecks_recall_and_searches_during_writes_see_whole_pools():
    index, ids, v = _ivf_index()
    clicks = np.random.default_rng(3).gamma(0.3, 50, len(ids))
    errors, stop = [], threading.Event()

    def writer():
        for i in range(0, 1_000, 100):
            index.set_popularity(ids, clicks)
            index.upsert(np.array([f"M{i + j}" for j in range(100)], dtype=object), v[i:i + 100],
                         np.zeros(100), np.full(100, 1e9))
            index.remove(ids[i:i + 100])
        stop.set()

    def reader():
        try:
            while not stop.is_set():
                got, _, _ = index.search(v[5], 50, 1.0)
                assert len(got) == 50 and len(set(got)) == 50
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and index.snapshot.size == 4_000 and index.snapshot.exhaustive is not None
