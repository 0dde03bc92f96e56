"""A replica's stream follower, its pure parts on a real item table and live index: vectors of its own model
version are used as sent, another version's are re-encoded; a takedown leaves the index; after a hot swap the new
pipeline is reconciled; the hot-swap catalogue includes streamed articles. The simulator's mapping and pacing."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from data.events import ArticlePublished, Clicked, ImpressionShown
from data.schema import NewsArticle
from feature_store.memory_store import InMemoryFeatureStore
from serving.index import LiveIndex
from recsys.item_table import ItemTable
from serving.pipeline import Pipeline
from serving.stream_follow import apply_vectors, merged_catalogue, unreflected
from streaming.events import ArticleEvent
from streaming.ingest import articles_table
from streaming.simulate import Burst, breaking_articles, schedule, to_stream
from streaming.vector_snapshot import FoldedVector
from tests.unit.test_ingest import SPEC, article, fake_tower


class TowerBackend:
    name = "test-tower"
    spec = SPEC

    def __init__(self):
        self.encoded = 0

    def item_vectors(self, inputs):
        self.encoded += len(inputs["category"])
        return fake_tower(inputs)


def pipeline(version: str = "v1") -> Pipeline:
    items = ItemTable(SPEC.embedding_dim)
    return Pipeline(InMemoryFeatureStore("t"), TowerBackend(), LiveIndex(SPEC.embedding_dim, items=items), items,
                    version)


def folded(a: ArticleEvent, version: str, vec=(1.0, 0.0, 0.0, 0.0)) -> FoldedVector:
    return FoldedVector(a, np.array(vec, np.float32), version)


def test_own_version_vectors_are_used_as_sent_and_other_versions_re_encoded():
    p = pipeline("v1")
    mine, theirs = folded(article("N1"), "v1", (0, 0, 1, 0)), folded(article("N2"), "v0", (1, 0, 0, 0))
    assert apply_vectors(p, [mine, theirs], now_s=1_500.0) == 1
    table = p.items.snapshot
    np.testing.assert_array_equal(table.vectors[table.row["N1"]], [0, 0, 1, 0])
    np.testing.assert_allclose(table.vectors[table.row["N2"]],
                               fake_tower(articles_table([theirs.article]).model_inputs(SPEC))[0])
    assert p.backend.encoded == 1
    ids, _, _ = p.index.search(np.array([0, 0, 1, 0], np.float32), k=2, now_s=1_500.0)
    assert ids[0] == "N1" and set(ids) == {"N1", "N2"}


def test_a_takedown_or_an_expired_article_leaves_the_index_but_stays_in_the_table():
    p = pipeline()
    apply_vectors(p, [folded(article("N1"), "v1"), folded(article("N2"), "v1")], now_s=1_500.0)
    takedown = article("N1", t=1_000.0, life_s=0.0, eid="a-N1-down")
    apply_vectors(p, [folded(takedown, "v1")], now_s=1_500.0)
    assert list(p.index.snapshot.news_ids) == ["N2"] and "N1" in p.items.snapshot.row


def test_after_a_swap_only_what_the_new_pipeline_lacks_is_reapplied():
    fold = [folded(article("N1"), "v1"), folded(article("N2"), "v1"), folded(article("N3", life_s=1.0), "v1")]
    new = pipeline("v2")
    apply_vectors(new, fold[:1], now_s=1_500.0)             # N1 came with the swap's catalogue
    missing = unreflected(new, fold, now_s=1_500.0)
    assert [m.article.news_id for m in missing] == ["N2", "N3"]  # N3 is dead but unknown to the table
    apply_vectors(new, missing, now_s=1_500.0)
    assert unreflected(new, fold, now_s=1_500.0) == []
    longer = folded(article("N2", life_s=7_200.0, eid="a-N2-2"), "v1")
    assert unreflected(new, [longer], now_s=1_500.0) == [longer]   # a changed lifetime is re-applied


def test_the_hot_swap_catalogue_is_the_catalogue_plus_streamed_articles():
    base = articles_table([article("N1", title="catalogue"), article("N9")])
    merged = merged_catalogue(base, [folded(article("N1", title="streamed"), "v1"), folded(article("N2"), "v1")])
    assert list(merged.news_ids) == ["N9", "N1", "N2"] and merged.index["N2"] == 2
    assert merged.text[1].startswith("streamed") and len(merged.text) == len(merged.publish_s) == 3
    assert merged_catalogue(base, []) is base
    assert list(merged_catalogue(None, [folded(article("N2"), "v1")]).news_ids) == ["N2"]


def _world_events():
    t = datetime(2019, 11, 10, 8)
    a = NewsArticle("N5", "news", "politics", "Vote today", "A close race", "", (), ())
    return [ArticlePublished(t, a, t + timedelta(hours=36)),
            ImpressionShown(t + timedelta(seconds=60), "7", "U3", ("N5",)),
            Clicked(t + timedelta(seconds=65), "7", "U3", "N5", 0)]


def test_world_events_become_stream_events_stamped_now_with_lifetimes_scaled():
    topics = [to_stream(e, now_s=2e9, run_id="r1", lifetime_scale=1 / 60) for e in _world_events()]
    assert [(t, k) for t, k, _ in topics] == [("articles", "N5"), ("impressions", "U3"), ("clicks", "U3")]
    art, imp, click = (e for _, _, e in topics)
    assert art.time_s == 2e9 and art.expire_s == 2e9 + 36 * 3600 / 60 and art.event_id == "r1:article-N5"
    assert imp.news_ids == ["N5"] and click.position == 0 and click.event_id == "r1:click-7-0"


def test_schedule_follows_the_speedup_and_never_exceeds_the_rate():
    events = _world_events()
    assert [round(d, 3) for d, _ in schedule(iter(events), speedup=60, rate=0)] == [0.0, 1.0, round(65 / 60, 3)]
    assert [round(d, 3) for d, _ in schedule(iter(events), speedup=60, rate=2)] == [0.0, 1.0, 1.5]
    assert [d for d, _ in schedule(iter(events), speedup=0, rate=0)] == [0.0, 0.0, 0.0]


def test_a_breaking_burst_is_new_valid_articles_on_one_topic():
    out = breaking_articles(Burst(5, 1.0, "football_nfl", lifetime_h=2.0), now_s=1e9, run_id="r")
    assert len({a.news_id for a in out}) == 5 and {a.subcategory for a in out} == {"football_nfl"}
    assert all(a.title.startswith("Breaking: ") and a.expire_s == 1e9 + 7_200 for a in out)
    with pytest.raises(ValueError, match="unknown subcategory"):
        breaking_articles(Burst(1, 0.0, "no-such-topic"), now_s=1e9, run_id="r")
