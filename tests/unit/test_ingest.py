"""The article ingestor's pure parts and its batch handler on in-memory doubles: streamed articles encode exactly
like catalogue ones, one vector event per article keyed by news id with a deterministic id, writes before return,
a failed publish fails the batch; the vector snapshot file round-trips and refuses what it should."""
from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from feature_store.memory_store import InMemoryFeatureStore
from recsys.dataset import Articles
from recsys.features import FeatureSpec
from streaming.consumer import Delivery
from streaming.events import EVENT_ID, ArticleEvent, ItemVectorEvent, parse_event
from streaming.ingest import (ArticleIngestor, articles_table, encode, item_features, latest_per_article,
                              vector_event_id, vector_events)
from streaming.producer import BrokerUnavailable
from streaming.settings import StreamSettings, Topics
from streaming.vector_snapshot import FoldedVector, VectorFold

SPEC = FeatureSpec(categories=("?", "news", "sports"), subcategories=("?", "politics", "football"), embedding_dim=4)


def article(news_id: str, t: float = 1_000.0, title: str = "Storm hits the coast", cat: str = "news",
            sub: str = "politics", life_s: float = 3_600.0, eid: str | None = None) -> ArticleEvent:
    return ArticleEvent(event_id=eid or f"a-{news_id}", time_s=t, news_id=news_id, title=title,
                        abstract="Crews work overnight", category=cat, subcategory=sub, expire_s=t + life_s)


def fake_tower(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """A deterministic stand-in for the item tower: depends on every input, unit length."""
    v = np.stack([inputs["category"], inputs["subcategory"], inputs["tokens"].sum(1) % 97,
                  (inputs["tokens"] > 0).sum(1)], axis=1).astype(np.float32) + 1
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_streamed_articles_build_the_same_tower_inputs_as_the_catalogue():
    events = [article("N1"), article("N2", title="Cup final tonight", cat="sports", sub="football")]
    catalogue = Articles(news_ids=np.array(["N1", "N2"], dtype=object), index={"N1": 0, "N2": 1},
                         category_name=np.array(["news", "sports"], dtype=object),
                         subcategory_name=np.array(["politics", "football"], dtype=object),
                         text=["Storm hits the coast Crews work overnight", "Cup final tonight Crews work overnight"],
                         publish_s=np.array([1_000.0, 1_000.0]), expire_s=np.array([4_600.0, 4_600.0]))
    streamed, expected = articles_table(events).model_inputs(SPEC), catalogue.model_inputs(SPEC)
    assert streamed.keys() == expected.keys()
    for k in expected:
        np.testing.assert_array_equal(streamed[k], expected[k])
    assert encode(fake_tower, SPEC, events).shape == (2, 4)


def test_encode_refuses_a_tower_that_returns_the_wrong_shape():
    with pytest.raises(ValueError, match="expected"):
        encode(lambda inputs: np.zeros((1, 4), np.float32), SPEC, [article("N1"), article("N2")])


def test_latest_per_article_keeps_the_last_event_of_each_id():
    a1, b, a2 = article("N1", title="first"), article("N2"), article("N1", title="second", eid="a-N1-v2")
    assert [e.title for e in latest_per_article([a1, b, a2])] == ["second", "Storm hits the coast"]


def test_vector_events_are_deterministic_valid_and_one_per_article():
    events = [article("N1"), article("N2")]
    vecs = encode(fake_tower, SPEC, events)
    out = vector_events(events, vecs, "v0001-x", now_s=5.0)
    assert [e.article.news_id for e in out] == ["N1", "N2"]
    assert out[0].event_id == vector_event_id("a-N1", "v0001-x") != vector_event_id("a-N1", "v0002-y")
    assert parse_event(out[0].to_bytes(), (ItemVectorEvent,)) == out[0]   # valid on the wire
    assert len(vector_event_id("x" * 128, "v" * 128)) <= 128
    assert re.match(EVENT_ID, out[0].event_id)
    with pytest.raises(ValueError):
        vector_events(events, vecs[:1], "v0001-x", 5.0)
    feats = item_features(events)
    assert feats[0].news_id == "N1" and feats[0].publish_s == 1_000.0 and feats[0].expire_s == 4_600.0


class FakeEncoder:
    def __init__(self):
        self.refreshes = 0

    def refresh(self) -> str:
        self.refreshes += 1
        return "v0001-test"

    def encode(self, events):
        return "v0001-test", encode(fake_tower, SPEC, events)


class RecordingPublisher:
    def __init__(self, fail: bool = False):
        self.records, self.fail = [], fail

    async def publish_many(self, records):
        if self.fail:
            raise BrokerUnavailable("broker down")
        self.records.extend(records)


def _deliveries(events):
    return [Delivery("articles", 0, i, e.news_id.encode(), e.to_bytes(), e) for i, e in enumerate(events)]


def test_the_handler_writes_features_and_publishes_vectors_keyed_by_news_id():
    store, pub = InMemoryFeatureStore("t"), RecordingPublisher()
    stream = StreamSettings(topics=Topics(prefix="p-"))
    ingestor = ArticleIngestor(FakeEncoder(), store, pub, stream, clock=lambda: 42.0)
    batch = _deliveries([article("N1", title="old"), article("N2"), article("N1", title="new", eid="a-N1-2")])
    outcome = asyncio.run(ingestor.handle(batch))
    assert outcome.applied == 3 and outcome.rejected == ()
    assert [(t, k) for t, k, _ in pub.records] == [("p-item-vectors", "N1"), ("p-item-vectors", "N2")]
    first = pub.records[0][2]
    assert first.article.title == "new" and first.model_version == "v0001-test" and first.time_s == 42.0
    stored = asyncio.run(store.get_item_features(["N1", "N2", "N3"]))
    assert stored[0].title == "new" and stored[1].news_id == "N2" and stored[2] is None


def test_a_failed_publish_fails_the_batch_so_nothing_is_committed():
    ingestor = ArticleIngestor(FakeEncoder(), InMemoryFeatureStore("t"), RecordingPublisher(fail=True),
                               StreamSettings())
    with pytest.raises(BrokerUnavailable):
        asyncio.run(ingestor.handle(_deliveries([article("N1")])))


def _fold(topic="iv") -> VectorFold:
    fold = VectorFold(topic)
    fold.apply([FoldedVector(article("N1"), np.array([1, 0, 0, 0], np.float32), "v1"),
                FoldedVector(article("N2", life_s=10.0), np.array([0, 1, 0], np.float32), "v0")])
    fold.advance(0, 5)
    fold.advance(3, 2)
    return fold


def test_the_vector_snapshot_round_trips(tmp_path):
    path = tmp_path / "snap" / "vectors.npz"
    _fold().save(path)
    back = VectorFold.load(path, "iv")
    assert back.offsets == {0: 5, 3: 2} and set(back.items) == {"N1", "N2"}
    np.testing.assert_array_equal(back.items["N2"].vector, [0, 1, 0])   # each keeps its own dimension
    assert back.items["N1"].model_version == "v1" and back.items["N1"].article == article("N1")
    assert not list(path.parent.glob(".*tmp"))   # the temp file was renamed, not left behind


def test_a_snapshot_of_another_topic_or_a_corrupt_one_is_ignored(tmp_path):
    path = tmp_path / "vectors.npz"
    _fold("other").save(path)
    assert VectorFold.load(path, "iv") is None
    path.write_bytes(b"not a zip")
    assert VectorFold.load(path, "iv") is None
    assert VectorFold.load(tmp_path / "missing.npz", "iv") is None


def test_prune_forgets_only_articles_expired_longer_than_the_grace():
    fold = _fold()
    assert fold.prune(now_s=1_000.0 + 10.0 + 100.0, keep_expired_s=50.0) == 1   # N2 expired 100 s ago
    assert set(fold.items) == {"N1"}
    fold.advance(0, 3)
    assert fold.offsets[0] == 5   # offsets never go back
