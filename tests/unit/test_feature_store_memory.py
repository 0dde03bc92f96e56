"""InMemoryFeatureStore specifics (its contract is the conformance suite) and materialization of the MIND-format
test fixture into it, checked against the offline log replay."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from feature_store.materialize import materialize
from feature_store.memory_store import InMemoryFeatureStore
from recsys.dataset import load_dataset
from recsys.features import FeatureSpec
from recsys.ranking_data import LogCounters, position_prior

MIND_FIXTURE = Path(__file__).parents[1] / "fixtures" / "mind_small"


def test_reads_count_one_round_trip_and_a_closed_store_refuses() -> None:
    async def main() -> None:
        store = InMemoryFeatureStore()
        await store.get_user("U1", 0.0)
        await store.get_item_counters(["N1", "N2"], 0.0)
        assert store.round_trips == 2
        await store.close()
        with pytest.raises(RuntimeError):
            await store.get_user("U1", 0.0)
    asyncio.run(main())


def test_materialize_replays_real_mind_with_overlapping_impression_ids() -> None:
    ds = load_dataset(MIND_FIXTURE)
    assert np.intersect1d(ds.train.imp_id, ds.dev.imp_id).size > 0  # train and dev both count from 1
    spec = FeatureSpec(categories=(), subcategories=(), position_prior=position_prior(ds.train))
    store = InMemoryFeatureStore()

    async def main():
        first = await materialize(store, ds, spec, batch_updates=3)
        again = await materialize(store, ds, spec)
        now_s = ds.origin.timestamp() + max(ds.train.imp_t.max(), ds.dev.imp_t.max()) + 3600
        return first, again, await store.get_item_counters(ds.articles.news_ids.tolist(), now_s), now_s
    first, again, online, now_s = asyncio.run(main())
    assert first["impressions"] == ds.train.imp_id.size + ds.dev.imp_id.size
    assert first["applied"] == first["events"] and first["duplicates"] == 0  # no id collision across splits
    assert again["applied"] == 0 and again["duplicates"] == first["events"]
    items = np.arange(len(ds.articles.news_ids))
    t = np.full(items.size, now_s - ds.origin.timestamp())
    np.testing.assert_allclose(online.clicks[24.0], LogCounters(ds).clicks(items, t, 24.0), rtol=1e-9)
    assert online.clicks[24.0].sum() > 0


def test_materialize_rejects_a_missing_prior_and_bad_batching() -> None:
    ds = load_dataset(MIND_FIXTURE)
    with pytest.raises(ValueError, match="position_prior"):
        asyncio.run(materialize(InMemoryFeatureStore(), ds, FeatureSpec(categories=(), subcategories=())))
    spec = FeatureSpec(categories=(), subcategories=(), position_prior=(0.1,))
    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(materialize(InMemoryFeatureStore(), ds, spec, concurrency=0))
