"""The feature updater's pure handlers (events + labels -> updates) and its batch handler on the in-memory store:
exactly-once by event id, unknown articles rejected with the reason, labels cached, the position prior followed
from the registry's current version."""
from __future__ import annotations

import asyncio
import json

import pytest

from feature_store.base import ClickUpdate, ImpressionUpdate, ItemFeatures
from feature_store.memory_store import InMemoryFeatureStore
from recsys.registry import ModelRegistry
from streaming.consumer import Delivery
from streaming.events import ArticleEvent, ClickEvent, ImpressionEvent
from streaming.feature_updater import FeatureUpdater, ModelSpecSource
from streaming.handlers import Rejected, labels_of, news_ids, to_updates

LABELS = {"N1": ("soccer", "sports"), "N2": ("markets", "finance"), "N3": ("nba", "sports")}
PRIOR = (0.3, 0.2, 0.1)


def click(i: int, news_id: str = "N1", user: str = "U1", t: float = 1_000.0) -> ClickEvent:
    return ClickEvent(event_id=f"c{i}", time_s=t, user_id=user, news_id=news_id)


def test_a_click_becomes_a_click_update_with_its_article_labels():
    [u] = to_updates([click(1, "N2", t=5.5)], LABELS, PRIOR)
    assert u == ClickUpdate("c1", "U1", "N2", "markets", "finance", 5.5)


def test_an_impression_keeps_slot_order_and_carries_the_prior():
    e = ImpressionEvent(event_id="i1", time_s=7.0, user_id="U2", news_ids=["N3", "N1", "N2", "N1"])
    [u] = to_updates([e], LABELS, PRIOR)
    assert u == ImpressionUpdate("i1", "U2", (("N3", "nba", "sports", 0), ("N1", "soccer", "sports", 1),
                                              ("N2", "markets", "finance", 2), ("N1", "soccer", "sports", 3)),
                                 7.0, PRIOR)


def test_unknown_articles_are_rejected_with_the_id_and_the_rest_still_become_updates():
    imp = ImpressionEvent(event_id="i1", time_s=1.0, user_id="U1", news_ids=["N1", "N404", "N405"])
    out = to_updates([click(1), click(2, "N999"), imp, click(3, "N3")], LABELS, PRIOR)
    assert out[1] == Rejected("unknown news id N999")
    assert out[2] == Rejected("unknown news id N404 (and 1 more)")  # a partial impression would skew expectations
    assert [type(u) for u in out] == [ClickUpdate, Rejected, Rejected, ClickUpdate]


def test_events_the_updater_does_not_apply_are_rejected_and_an_empty_prior_is_an_error():
    article = ArticleEvent(event_id="a1", time_s=1.0, news_id="N9", category="c", subcategory="s", title="t",
                           expire_s=2.0)
    assert to_updates([article], LABELS, PRIOR) == [Rejected("the feature updater does not apply ArticleEvent")]
    with pytest.raises(ValueError, match="position_prior"):
        to_updates([click(1)], LABELS, ())


def test_news_ids_and_labels_of():
    imp = ImpressionEvent(event_id="i1", time_s=1.0, user_id="U1", news_ids=["N2", "N3"])
    assert news_ids([click(1), imp, click(2)]) == {"N1", "N2", "N3"}
    item = ItemFeatures("N7", "sports", "golf", "title", 0.0, 1.0)
    assert labels_of([None, item]) == {"N7": ("golf", "sports")}


def _delivery(offset: int, event) -> Delivery:
    return Delivery("clicks", 0, offset, event.user_id.encode(), event.to_bytes(), event)


def _updater(store: InMemoryFeatureStore, tmp_path, grace_ms: float = 0.0) -> FeatureUpdater:
    spec = ModelSpecSource(tmp_path / "no-registry", PRIOR, 50, poll_s=60.0)
    return FeatureUpdater(store, spec, unknown_grace_ms=grace_ms, cache_size=1_000)


def _seed(store: InMemoryFeatureStore) -> None:
    asyncio.run(store.put_items([ItemFeatures(n, c, s, "t", 0.0, 1e10) for n, (s, c) in LABELS.items()]))


def test_the_batch_handler_applies_once_and_counts_redeliveries_as_duplicates(tmp_path):
    store = InMemoryFeatureStore()
    _seed(store)
    updater = _updater(store, tmp_path)
    batch = [_delivery(0, click(1, "N1")), _delivery(1, click(2, "N2")), _delivery(2, click(3, "N404"))]

    async def run():
        await updater.start()
        first = await updater.handle(batch)
        again = await updater.handle(batch)  # a crash before the commit: the same batch again
        return first, again, await store.get_user("U1", 2_000.0)

    first, again, user = asyncio.run(run())
    assert (first.applied, first.duplicates) == (2, 0)
    assert [(d.offset, reason) for d, reason in first.rejected] == [(2, "unknown news id N404")]
    assert (again.applied, again.duplicates, len(again.rejected)) == (0, 2, 1)
    assert user.history == ("N2", "N1") and user.history_len == 2


def test_labels_are_read_once_then_cached(tmp_path):
    store = InMemoryFeatureStore()
    _seed(store)
    updater = _updater(store, tmp_path)

    async def run():
        await updater.handle([_delivery(0, click(1))])
        before = store.round_trips
        await updater.handle([_delivery(1, click(2))])
        return store.round_trips - before

    assert asyncio.run(run()) == 1  # the write only: N1's labels came from the cache


def test_an_article_written_during_the_grace_period_is_applied_not_dead_lettered(tmp_path):
    store = InMemoryFeatureStore()
    _seed(store)
    updater = _updater(store, tmp_path, grace_ms=2_000.0)

    async def run():
        async def ingest_late():  # the article ingestor writing the article a moment after the click arrived
            await asyncio.sleep(0.12)
            await store.put_items([ItemFeatures("N50", "sports", "golf", "t", 0.0, 1e10)])
        late = asyncio.create_task(ingest_late())
        outcome = await updater.handle([_delivery(0, click(1, "N50"))])
        await late
        return outcome

    outcome = asyncio.run(run())
    assert (outcome.applied, outcome.rejected) == (1, ())


def _publish(registry: ModelRegistry, tmp_path, prior: list[float], history_len: int) -> str:
    src = tmp_path / f"src-{len(prior)}"
    src.mkdir()
    (src / "weights.json").write_text(json.dumps({"w": 1}))
    v = registry.publish(src, training_config={}, feature_spec={"position_prior": prior, "history_len": history_len},
                         data_range={}, metrics={})
    return v.version


def test_the_position_prior_follows_the_registry_current_version(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    first = _publish(registry, tmp_path, [0.5, 0.25], 20)
    registry.promote(first)
    spec = ModelSpecSource(registry.root, PRIOR, 50, poll_s=1e-6)
    spec.refresh()
    assert (spec.version, spec.position_prior, spec.history_len) == (first, (0.5, 0.25), 20)
    second = _publish(registry, tmp_path, [0.4, 0.3, 0.2], 20)
    registry.promote(second)
    spec.refresh()
    assert (spec.version, spec.position_prior) == (second, (0.4, 0.3, 0.2))


def test_without_a_registry_version_the_configured_prior_is_used_and_none_at_all_fails_at_start(tmp_path):
    spec = ModelSpecSource(tmp_path / "missing", PRIOR, 50, poll_s=60.0)
    spec.refresh()
    assert (spec.version, spec.position_prior) == (None, PRIOR)
    bare = FeatureUpdater(InMemoryFeatureStore(), ModelSpecSource(tmp_path / "missing", (), 50, 60.0), 0.0, 10)
    with pytest.raises(RuntimeError, match="no position prior"):
        asyncio.run(bare.start())
