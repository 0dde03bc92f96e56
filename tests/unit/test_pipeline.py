"""The request path on in-memory parts: fresh, unseen, deduplicated, diverse answers; degradation with reasons."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from data.synth import preset, write_world
from feature_store.materialize import materialize
from feature_store.memory_store import InMemoryFeatureStore
from recsys.dataset import load_dataset
from recsys.train import TrainConfig, build_spec
from serving.index import LiveIndex
from recsys.item_table import ItemTable
from serving.pipeline import Pipeline, PipelineSettings, recommend


class MeanBackend:
    """A test double of InferenceBackend: user = normalized mean of history vectors; ranker = a fixed linear map."""

    name = "test-mean"

    def __init__(self, spec):
        self.spec = spec
        self.w = np.random.default_rng(0).normal(size=len(spec.ranker_features)).astype(np.float32)

    def user_vectors(self, history, item_vecs):
        mask = history >= 0
        v = (item_vecs[np.maximum(history, 0)] * mask[..., None]).sum(1)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)

    def rank(self, features):
        return features @ self.w


class NetworkLikeStore(InMemoryFeatureStore):
    """Yields to the event loop on a read, as a network store does (so concurrent requests interleave)."""

    def __init__(self, inner: InMemoryFeatureStore):
        self.__dict__.update(inner.__dict__)

    async def get_user(self, user_id, now_s):
        await asyncio.sleep(0)
        return await super().get_user(user_id, now_s)


class DownStore(InMemoryFeatureStore):
    async def get_user(self, user_id, now_s):
        raise ConnectionError("redis is down")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    write_world(preset("tiny"), out)
    ds = load_dataset(out)
    spec = build_spec(ds, TrainConfig())
    a, origin = ds.articles, ds.origin.timestamp()
    now = origin + float(ds.dev.imp_t[len(ds.dev.imp_t) // 2])
    vecs = np.random.default_rng(1).normal(size=(a.news_ids.size, spec.embedding_dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    items, index = ItemTable(spec.embedding_dim), LiveIndex(spec.embedding_dim, 0.05)
    items.upsert(a.news_ids, vecs, a.subcategory_name, a.category_name, origin + a.publish_s)
    index.upsert(a.news_ids, vecs, origin + a.publish_s, origin + a.expire_s)
    store = InMemoryFeatureStore()
    asyncio.run(materialize(store, ds, spec, now_s=now))
    return ds, spec, store, items, index, now


def _run(p, user, k, now, budget_s=1.0):
    return asyncio.run(recommend(p, user, k, now, time.perf_counter() + budget_s))


def test_ranked_answer_is_fresh_unseen_deduplicated_and_capped(parts):
    ds, spec, store, items, index, now = parts
    p = Pipeline(store, MeanBackend(spec), index, items, "v-test", PipelineSettings(retrieval_k=200, category_cap=3))
    user = str(ds.dev.imp_user[0])
    rec = _run(p, user, 10, now)
    assert rec.source == "ranked" and len(rec.news_ids) == 10 and len(set(rec.news_ids)) == 10
    history = asyncio.run(store.get_user(user, now)).history
    assert not set(rec.news_ids) & set(history)
    snap = index.snapshot
    live = {n for n, pub, exp in zip(snap.news_ids, snap.publish_s, snap.expire_s) if pub <= now < exp}
    assert set(rec.news_ids) <= live
    cats = items.snapshot.labels(items.snapshot.rows(rec.news_ids), "category")
    assert max(np.unique(cats, return_counts=True)[1]) <= 3
    assert {"features", "user_tower", "retrieval", "ranker", "rules"} <= set(rec.timings_ms)


def test_store_down_answers_trending_and_says_so(parts):
    ds, spec, _, items, index, now = parts
    p = Pipeline(DownStore(), MeanBackend(spec), index, items, "v-test")
    rec = _run(p, str(ds.dev.imp_user[0]), 10, now)
    assert rec.source == "trending" and rec.degraded == ("store_unavailable",) and len(rec.news_ids) == 10


def test_no_budget_for_the_ranker_serves_retrieval_order(parts):
    ds, spec, store, items, index, now = parts
    p = Pipeline(store, MeanBackend(spec), index, items, "v-test", PipelineSettings(ranker_min_budget_ms=10_000))
    rec = _run(p, str(ds.dev.imp_user[0]), 10, now)
    assert rec.source == "retrieval" and rec.degraded == ("deadline",) and len(rec.news_ids) == 10


def test_unknown_reader_gets_a_diverse_cold_start_list(parts):
    _, spec, store, items, index, now = parts
    p = Pipeline(store, MeanBackend(spec), index, items, "v-test", PipelineSettings(category_cap=2))
    rec = _run(p, "U999999999", 10, now)
    assert rec.source == "cold_start" and len(rec.news_ids) == 10
    cats = items.snapshot.labels(items.snapshot.rows(rec.news_ids), "category")
    assert len(set(cats)) >= 5


def test_micro_batched_requests_get_the_answers_they_get_alone(parts):
    ds, spec, store, items, index, now = parts
    users = [str(u) for u in dict.fromkeys(ds.dev.imp_user[:40])][:12]
    backend, store = MeanBackend(spec), NetworkLikeStore(store)
    lone = Pipeline(store, backend, index, items, "v-test", PipelineSettings(retrieval_k=200))
    batched = Pipeline(store, backend, index, items, "v-test", PipelineSettings(
        retrieval_k=200, micro_batch_wait_ms=2.0, ranker_batch_wait_ms=2.0))

    async def all_at_once(p):
        return await asyncio.gather(*(recommend(p, u, 10, now, time.perf_counter() + 5) for u in users))

    alone, together = asyncio.run(all_at_once(lone)), asyncio.run(all_at_once(batched))
    assert [r.news_ids for r in together] == [r.news_ids for r in alone]
    for a, b in zip(alone, together):
        np.testing.assert_allclose(b.scores, a.scores, rtol=1e-5)
    for stats in (batched.in_flight.retrieval.stats, batched.in_flight.ranker.stats):
        assert stats.requests == sum(r.source == "ranked" for r in alone) and stats.calls < stats.requests


def model_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("newsrec-model")]


def test_model_calls_off_the_loop_with_loop_turns_give_the_same_answers(parts):
    ds, spec, store, items, index, now = parts
    before = set(model_threads())  # other tests' servers may hold theirs
    users = [str(u) for u in dict.fromkeys(ds.dev.imp_user[:40])][:12]
    backend, store = MeanBackend(spec), NetworkLikeStore(store)
    on_loop = Pipeline(store, backend, index, items, "v-test",
                       PipelineSettings(retrieval_k=200, micro_batch_wait_ms=2.0))
    off_loop = Pipeline(store, backend, index, items, "v-test", PipelineSettings(
        retrieval_k=200, micro_batch_wait_ms=2.0, model_thread=True, loop_turns=True))

    async def all_at_once(p):
        return await asyncio.gather(*(recommend(p, u, 10, now, time.perf_counter() + 5) for u in users))

    a, b = asyncio.run(all_at_once(on_loop)), asyncio.run(all_at_once(off_loop))
    assert [r.news_ids for r in b] == [r.news_ids for r in a] and {r.source for r in b} == {r.source for r in a}
    assert off_loop.in_flight.retrieval.executor is not None and off_loop.in_flight.turns is not None
    assert off_loop.in_flight.retrieval.stats.calls < off_loop.in_flight.retrieval.stats.requests  # still batched
    assert set(model_threads()) - before  # its model thread
    off_loop.in_flight.close()  # at shutdown: the model thread ends
    on_loop.in_flight.close()  # no thread: nothing to stop
    assert not set(model_threads()) - before
