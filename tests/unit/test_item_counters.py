"""The pool's in-process item counters: read at a refresh, decayed on to request time, they equal a store read at
request time (for events before the refresh); rows follow the index through expiry and upserts."""
from __future__ import annotations

import asyncio

import numpy as np

from feature_store.memory_store import InMemoryFeatureStore
from serving.index import LiveIndex
from serving.item_counters import concat_counters

D = 4
PRIOR = (0.3, 0.2, 0.1)


def test_refreshed_counters_decay_to_what_the_store_reads_later():
    store = InMemoryFeatureStore()
    ids = [f"N{i}" for i in range(6)]

    async def events():
        for i, n in enumerate(ids[:5]):
            await store.apply_impression(f"imp{i}", "U1", [(n, "s", "c", i % 3)], 1_000.0 + i, PRIOR)
            for j in range(i):
                await store.apply_click(f"clk{i}-{j}", "U1", n, "s", "c", 1_000.0 + 10 * i + j)

    asyncio.run(events())
    index = LiveIndex(D)
    vecs = np.random.default_rng(0).normal(size=(6, D)).astype(np.float32)
    index.upsert(ids, vecs, np.zeros(6), np.r_[np.full(5, 1e9), 2_000.0])
    t_ref, later = 3_000.0, 3_000.0 + 5_400.0
    parts = [asyncio.run(store.get_item_counters(ids[:3], t_ref)), asyncio.run(store.get_item_counters(ids[3:], t_ref))]
    index.set_counters(concat_counters(parts), t_ref)
    index.expire(t_ref)  # N5 goes: the counters follow the surviving rows
    index.upsert(["N9"], vecs[:1], [0.0], [1e9])  # added after the refresh: reads 0 until the next one
    s = index.snapshot
    rows = np.arange(s.size)
    got = s.counters.at(rows, tuple(s.news_ids), later)
    want = asyncio.run(store.get_item_counters(tuple(s.news_ids), later))
    assert list(s.news_ids) == ids[:5] + ["N9"]
    for h in got.clicks:
        np.testing.assert_allclose(got.clicks[h], want.clicks[h], rtol=1e-12)
    for h in got.expected_clicks:
        np.testing.assert_allclose(got.expected_clicks[h], want.expected_clicks[h], rtol=1e-12)
    np.testing.assert_allclose(got.shows_6h, want.shows_6h, rtol=1e-12)
    assert got.clicks[6.0][-1] == 0.0 and got.clicks[6.0][3] > 0
    # the popularity dimension comes along
    np.testing.assert_allclose(s.clicks_6h[:5], np.concatenate([c.clicks[6.0] for c in parts])[:5])
