"""Materialization of the tiny synthetic world into real Redis: the online state equals the offline log replay
(recsys.ranking_data.LogCounters) at the same time, and re-running applies nothing twice."""
from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import redis

from data.synth import preset, write_world
from feature_store.materialize import materialize_world
from feature_store.redis_store import RedisFeatureStore
from newsrec.services import ServiceEndpoints
from recsys.dataset import load_dataset
from recsys.ranking_data import LogCounters, position_prior

pytestmark = pytest.mark.integration
TOL = {"rtol": 1e-6, "atol": 1e-9}


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_world")
    write_world(preset("tiny"), out)
    return out


def _query_impression(ds) -> int:
    """A dev impression in the later half of the log, whose reader has no other impression that second (so "before
    it" is unambiguous), with the longest history."""
    sp = ds.dev
    seen = Counter(zip(np.concatenate([ds.train.imp_user, sp.imp_user]).tolist(),
                       np.concatenate([ds.train.imp_t, sp.imp_t]).tolist()))
    late = np.argsort(sp.imp_t)[sp.imp_t.size // 2:]
    ok = [i for i in late if seen[sp.imp_user[i], float(sp.imp_t[i])] == 1]
    return int(max(ok, key=lambda i: (sp.history[i] >= 0).sum()))


def test_materialized_state_equals_the_offline_replay(tiny_world: Path, services: ServiceEndpoints,
                                                      unique_name: str, redis_client: redis.Redis) -> None:
    ds = load_dataset(tiny_world)
    i = _query_impression(ds)
    t_q, user = float(ds.dev.imp_t[i]), str(ds.dev.imp_user[i])
    now_s = ds.origin.timestamp() + t_q
    stats = materialize_world(tiny_world, services.redis_url, unique_name, now_s=now_s)
    assert stats["applied"] == stats["events"] > 0 and stats["duplicates"] == 0
    assert stats["items"] == len(ds.articles.news_ids) and stats["events_per_s"] > 0

    counters = LogCounters(ds)
    prior = np.asarray(position_prior(ds.train))
    items = np.arange(len(ds.articles.news_ids))
    t = np.full(items.size, t_q)
    ids = ds.articles.news_ids.tolist()

    async def read():
        store = RedisFeatureStore(services.redis_url, unique_name)
        try:
            return (await store.get_user(user, now_s), await store.get_item_counters(ids, now_s),
                    await store.get_item_features(ids[:3]))
        finally:
            await store.close()
    online_user, online, features = asyncio.run(read())

    # the reader's history as training saw it at this impression: clicks before it, most recent first
    row = ds.dev.history[i]
    assert online_user.history == tuple(ds.articles.news_ids[row[row >= 0]])
    assert online_user.history_len >= len(online_user.history) > 0
    for h in (1.0, 6.0, 24.0):
        np.testing.assert_allclose(online.clicks[h], counters.clicks(items, t, h), **TOL)
    assert online.clicks[24.0].max() > 1.0  # a real comparison: popular items have decayed clicks
    np.testing.assert_allclose(online.shows_6h, counters.shows(items, t, 6.0), **TOL)
    for h in (6.0, 24.0):
        np.testing.assert_allclose(online.expected_clicks[h], counters.expected_clicks(items, t, h, prior), **TOL)
    for level, names in (("subcategory", ds.articles.subcategory_name), ("category", ds.articles.category_name)):
        for h in (24.0, 168.0):
            want_c, want_e = counters.user_topic(np.full(items.size, user), items, t, level, h, prior)
            got_c, got_e = online_user.topic_counts(level, h, names.tolist())
            np.testing.assert_allclose(got_c, want_c, **TOL)
            np.testing.assert_allclose(got_e, want_e, **TOL)
    assert features[0].news_id == ids[0] and features[0].title
    assert features[0].publish_s == pytest.approx(ds.origin.timestamp() + ds.articles.publish_s[0])

    again = materialize_world(tiny_world, services.redis_url, unique_name, now_s=now_s)
    assert again["applied"] == 0 and again["duplicates"] == stats["events"]


def test_limit_impressions_replays_the_first_ones(tiny_world: Path, services: ServiceEndpoints, unique_name: str,
                                                 redis_client: redis.Redis) -> None:
    stats = materialize_world(tiny_world, services.redis_url, unique_name, limit_impressions=50)
    assert stats["impressions"] == 50 and stats["applied"] == stats["events"] == 50 + stats["clicks"]
    assert stats["seeded_users"] > 50  # every reader of the log gets their prior history
