"""No training/serving skew: a logged impression's ranker features built from the online store (serving path)
equal those built by log replay (training path)."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from data.synth import preset, write_world
from feature_store.materialize import materialize
from feature_store.memory_store import InMemoryFeatureStore
from recsys.dataset import Split, load_dataset
from recsys.ranking_data import LogCounters, ranker_rows
from recsys.train import TrainConfig, build_spec
from recsys.online_features import Candidates, online_ranker_features


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("skew")
    write_world(preset("tiny"), out)
    ds = load_dataset(out)
    return ds, build_spec(ds, TrainConfig())


def _one(split: Split, i: int) -> Split:
    rows = split.row_imp == i
    return Split(imp_id=split.imp_id[[i]], imp_user=split.imp_user[[i]], imp_t=split.imp_t[[i]],
                 history=split.history[[i]], history_len=split.history_len[[i]],
                 row_imp=np.zeros(rows.sum(), dtype=np.int64), row_item=split.row_item[rows],
                 row_pos=split.row_pos[rows], row_label=split.row_label[rows])


@pytest.mark.parametrize("pick", [0, 400, 1500])
def test_serving_features_equal_training_features(world, pick):
    ds, spec = world
    a, dev = ds.articles, ds.dev
    i = min(pick, dev.imp_id.size - 1)
    rng = np.random.default_rng(pick)
    item_vecs = rng.normal(size=(a.news_ids.size, spec.embedding_dim)).astype(np.float32)
    user_vec = rng.normal(size=spec.embedding_dim).astype(np.float32)
    offline = ranker_rows(ds, _one(dev, i), spec, item_vecs, user_vec[None, :], LogCounters(ds))

    now = ds.origin.timestamp() + float(dev.imp_t[i])
    store = InMemoryFeatureStore()
    rows = dev.row_item[dev.row_imp == i]
    ids = tuple(a.news_ids[rows])

    async def serve() -> np.ndarray:
        await materialize(store, ds, spec, now_s=now)  # everything logged before this impression
        user = await store.get_user(str(dev.imp_user[i]), now)
        counters = await store.get_item_counters(ids, now)
        hist = np.array([a.index[n] for n in user.history])
        cand = Candidates(ids, item_vecs[rows], a.subcategory_name[rows], a.category_name[rows],
                          ds.origin.timestamp() + a.publish_s[rows])
        return online_ranker_features(spec, user, user_vec, cand, counters, a.subcategory_name[hist],
                                      a.category_name[hist], now, positions=dev.row_pos[dev.row_imp == i])

    online = asyncio.run(serve())
    assert online.shape == offline.shape
    for j, name in enumerate(spec.ranker_features):
        np.testing.assert_allclose(online[:, j], offline[:, j], rtol=1e-5, atol=1e-6, err_msg=name)
