"""The online trainer's parts without network: the click join, rows equal to the offline (training) features, the
replay window, the gate, and the whole trainer over the tiny world's stream with an in-memory store."""
from __future__ import annotations

import asyncio
import dataclasses
import shutil
import zlib
from datetime import UTC

import numpy as np
import pytest
import torch

from data.events import iter_world_events
from feature_store.base import ClickUpdate, ImpressionUpdate
from feature_store.materialize import materialize
from feature_store.memory_store import InMemoryFeatureStore
from recsys.bundle import ITEM, RANKER, USER, WEIGHTS, ModelBundle
from recsys.dataset import load_dataset
from recsys.models.ranker import Ranker
from recsys.ranking_data import LogCounters, ranker_rows
from recsys.registry import ModelRegistry
from recsys.train import TrainConfig, build_spec
from recsys.item_table import ItemTable
from streaming.events import ClickEvent, ImpressionEvent, ModelUpdateEvent
from streaming.online_rows import ClickJoiner, LabelledImpression, LowWatermark, PendingImpression, RowBuilder
from streaming.online_training import OnlineTrainingConfig, RowWindow, fine_tune, gate, holdout_metrics
from streaming.simulate import to_stream
from streaming.trainer import OnlineTrainer

F = 5


def _pending(imp_id: str, t: float, ids=("N1", "N2", "N3"), history=frozenset()) -> PendingImpression:
    return PendingImpression(imp_id, "U1", t, tuple(ids), np.zeros((len(ids), F), np.float32), frozenset(history))


def test_join_labels_clicks_within_the_window_whatever_the_arrival_order():
    j = ClickJoiner(window_s=60)
    j.add_click("i1", "N2", 101.0)          # the click is consumed before its impression
    j.add_impression(_pending("i1", 100.0))
    j.add_impression(_pending("i2", 110.0))
    j.add_impression(_pending("i2", 110.0))  # redelivered: ignored
    j.add_click("i2", "N3", 120.0)
    j.add_click(None, "N1", 121.0)           # no impression id: cannot be joined
    assert j.advance() == [] and j.pending == 2
    done = j.advance(watermark_s=165.0)      # only i1 (shown at 100) is past the 60 s window
    assert [d.impression_id for d in done] == ["i1"]
    np.testing.assert_array_equal(done[0].labels, [0, 1, 0])
    done = j.advance(watermark_s=500.0)
    assert [d.impression_id for d in done] == ["i2"] and done[0].labels.tolist() == [0, 0, 1]
    assert (j.stats.impressions, j.stats.clicks_joined, j.stats.clicks_unmatched, j.stats.labelled) == (2, 2, 1, 2)


def test_join_flags_a_label_that_leaked_into_the_features_and_expires_orphans():
    j = ClickJoiner(window_s=10)
    j.add_impression(_pending("i1", 0.0, history={"N2"}))  # N2 already in the history read for the features
    j.add_click("i1", "N2", 3.0)
    j.add_click("ghost", "N1", 4.0)                         # its impression never comes
    (done,) = j.advance(watermark_s=100.0)
    assert done.leaked and j.stats.leaked == 1 and j.stats.clicks_unmatched == 1
    with pytest.raises(ValueError):
        ClickJoiner(window_s=0)


def test_low_watermark_is_the_oldest_live_partition_and_never_decreases():
    w = LowWatermark(idle_s=30.0)
    w.expect(["a", "b"], now_s=0.0)
    assert w.observe([("a", 1_000.0), ("a", 5_000.0)], now_s=1.0) == 0.0  # b not heard from yet: no progress
    assert w.observe([("b", 2_000.0)], now_s=2.0) == 2_000.0              # a drained ahead: b's time holds it
    assert w.observe([("b", 1_500.0)], now_s=3.0) == 2_000.0              # out of order within b: no step back
    assert w.observe([("a", 6_000.0)], now_s=40.0) == 6_000.0             # b silent for 38 s: idle, not waited for
    assert w.observe([("c", 100.0)], now_s=41.0) == 6_000.0               # a newcomer cannot move it backwards
    w.expect(["d"], now_s=50.0)
    assert w.observe([("a", 7_000.0)], now_s=51.0) == 6_000.0             # d expected, silent for 1 s


def _labelled(imp_id: str, n: int = 4, leaked=False, seed=0) -> LabelledImpression:
    rng = np.random.default_rng(seed)
    return LabelledImpression(imp_id, "U1", 0.0, rng.normal(size=(n, F)).astype(np.float32),
                              (np.arange(n) == 0).astype(np.float32), leaked)


def test_window_splits_holdout_by_id_hash_skips_leaked_and_wraps():
    cfg = OnlineTrainingConfig(replay_rows=40, holdout_percent=30, holdout_impressions=5, batch_rows=16)
    w = RowWindow(cfg, F)
    imps = [_labelled(f"imp-{i}", seed=i) for i in range(60)] + [_labelled("leak", leaked=True)]
    w.add(imps)
    held = [i for i in imps[:60] if cfg.is_holdout(i.impression_id)]
    assert 5 < len(held) < 40 and w.skipped_leaked == 1
    assert [i.impression_id for i in w.holdout] == [i.impression_id for i in held[-5:]]  # the most recent ones
    trained = [i for i in imps[:60] if not cfg.is_holdout(i.impression_id)]
    assert w.size == 40 and w.new_rows == 4 * len(trained)
    newest = trained[-1].features  # the ring keeps the newest rows
    assert any(np.array_equal(w.x[r], newest[0]) for r in range(40))
    x, y = w.sample(np.random.default_rng(0))
    assert x.shape == (16, F) and y.shape == (16,)
    hx, hy, hg = w.holdout_arrays()
    assert hx.shape == (20, F) and hg.tolist() == np.repeat(np.arange(5), 4).tolist()


def _learnable(n: int, seed: int) -> list[LabelledImpression]:
    """Impressions whose clicked item is the one with the largest feature 0."""
    rng, out = np.random.default_rng(seed), []
    for i in range(n):
        x = rng.normal(size=(6, F)).astype(np.float32)
        out.append(LabelledImpression(f"s{seed}-{i}", "U1", float(i), x,
                                      (x[:, 0] == x[:, 0].max()).astype(np.float32), False))
    return out


def test_fine_tuning_learns_and_the_gate_promotes_only_without_regression():
    torch.manual_seed(0)
    cfg = OnlineTrainingConfig(replay_rows=5_000, batch_rows=256, max_steps_per_batch=50, lr=3e-3)
    w = RowWindow(cfg, F)
    w.add(_learnable(1_500, seed=1))
    parent = Ranker(F, (16,)).eval()
    child = Ranker(F, (16,))
    child.load_state_dict(parent.state_dict())
    fine_tune(child, torch.optim.Adam(child.parameters(), lr=cfg.lr), w, np.random.default_rng(0))
    x, y, g = w.holdout_arrays()
    better, before = holdout_metrics(child, x, y, g), holdout_metrics(parent, x, y, g)
    assert better["auc"] > 0.8 > before["auc"] and better["logloss"] < before["logloss"]
    assert w.new_rows == 0 and w.trained_rows == 50 * 256
    ok, reason = gate(better, before, cfg)
    assert ok and reason.startswith("no regression")
    ok, reason = gate(before, better, cfg)
    assert not ok and reason.startswith("regression")
    nan = dict(before, auc=float("nan"))
    assert not gate(nan, better, cfg)[0]


# -- with the tiny world ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tiny_random_model, tmp_path_factory):
    """(dataset, spec, a copy of the untrained model's registry)."""
    world, registry = tiny_random_model
    root = tmp_path_factory.mktemp("online-trainer")
    shutil.copytree(registry, root / "registry")
    ds = load_dataset(world)
    return ds, build_spec(ds, TrainConfig()), ModelRegistry(root / "registry")


def test_rows_equal_the_offline_training_rows(tiny):
    """No skew: a streamed impression's row (store read + serving's feature function + the user tower) equals the
    row offline training builds by log replay for the same logged impression."""
    ds, spec, reg = tiny
    bundle = ModelBundle.load(reg.load().path)
    a, dev = ds.articles, ds.dev
    vecs = bundle.item_vectors(a.model_inputs(spec))
    items = ItemTable(spec.embedding_dim)
    origin = ds.origin.timestamp()
    items.upsert(a.news_ids, vecs, a.subcategory_name, a.category_name, origin + a.publish_s)
    i = 700
    offline = ranker_rows(ds, dev, spec, vecs, bundle.user_vectors(dev.history, vecs),
                          LogCounters(ds))[dev.row_imp == i]
    now = origin + float(dev.imp_t[i])
    shown = tuple(a.news_ids[dev.row_item[dev.row_imp == i]])
    store = InMemoryFeatureStore()

    async def build():
        await materialize(store, ds, spec, now_s=now)
        return await RowBuilder(bundle, items, store).build([ImpressionEvent(
            event_id="imp-x", time_s=now, user_id=str(dev.imp_user[i]), news_ids=list(shown), impression_id="x")])

    (row,) = asyncio.run(build())
    assert row.news_ids == shown
    for j, name in enumerate(spec.ranker_features):
        np.testing.assert_allclose(row.features[:, j], offline[:, j], rtol=1e-4, atol=1e-5, err_msg=name)


def _stream_events(world, t0: float, limit: int) -> list:
    """The world after t0 as the simulator publishes it, stamped with each event's own world time."""
    out = []
    for e in iter_world_events(world):
        if (t := e.time.replace(tzinfo=UTC).timestamp()) >= t0:  # the world's naive times are UTC
            out.append(to_stream(e, t, "t", 1.0)[2])
        if len(out) >= limit:
            return out
    return out


def _store_updates(events, items: ItemTable, prior) -> list:
    """What the feature updater writes for these events (the trainer's test double of that worker)."""
    snap, out = items.snapshot, []
    for e in events:
        if isinstance(e, ClickEvent):
            r = snap.rows([e.news_id])
            out.append(ClickUpdate(e.event_id, e.user_id, e.news_id, str(snap.labels(r, "subcategory")[0]),
                                   str(snap.labels(r, "category")[0]), e.time_s))
        elif isinstance(e, ImpressionEvent):
            r = snap.rows(e.news_ids)
            shown = tuple((n, str(s), str(c), k) for k, (n, s, c) in enumerate(
                zip(e.news_ids, snap.labels(r, "subcategory"), snap.labels(r, "category"))))
            out.append(ImpressionUpdate(e.event_id, e.user_id, shown, e.time_s, prior))
    return out


def test_trainer_fine_tunes_gates_publishes_and_bounds_churn(tiny):
    ds, spec, reg = tiny
    shutil.copytree(reg.root, reg.root.parent / "trainer-registry")
    reg = ModelRegistry(reg.root.parent / "trainer-registry")
    parent = reg.current()
    origin = ds.origin.timestamp()
    t0 = origin + float(np.quantile(ds.train.imp_t, 0.6))
    now = [0.0]
    cfg = OnlineTrainingConfig(min_train_rows=500, min_holdout_impressions=30, eval_every_s=0.0,
                               min_promote_interval_s=1_000.0, join_window_s=120.0, max_steps_per_batch=8, lr=1e-3)
    store = InMemoryFeatureStore()
    catalogue = dataclasses.replace(ds.articles, publish_s=origin + ds.articles.publish_s,
                                    expire_s=origin + ds.articles.expire_s)
    events = _stream_events(ds.world_dir, t0, 6_000)

    async def run():
        await materialize(store, ds, spec, now_s=t0)
        trainer = OnlineTrainer(reg, store, cfg, catalogue=catalogue, clock=lambda: now[0])
        updates = []
        for s in range(0, len(events), 300):
            batch = events[s:s + 300]
            updates += await trainer.handle(batch)
            await store.apply_updates(_store_updates(batch, trainer.items, spec.position_prior))
            now[0] += 10.0
        return trainer, updates

    trainer, updates = asyncio.run(run())
    # the first candidate beats the random-weight parent; the churn bound (1000 s on this clock) allows no second
    assert trainer.stats.promotions == 1 and len(updates) == 1, trainer.stats
    (update,) = updates
    assert isinstance(update, ModelUpdateEvent) and update.parent == parent and update.version == reg.current()
    child = reg.load(update.version)  # sha256-verified
    old = reg.load(parent)
    assert child.parent == parent and child.metrics["online"]["candidate"]["logloss"] < \
        child.metrics["online"]["parent"]["logloss"]
    for f in (ITEM, USER, WEIGHTS["item"], WEIGHTS["user"], "feature_spec.json"):
        assert (child.path / f).read_bytes() == (old.path / f).read_bytes(), f
    assert (child.path / RANKER).read_bytes() != (old.path / RANKER).read_bytes()
    assert ModelBundle.load(child.path).rank(np.zeros((3, len(spec.ranker_features)), np.float32)).shape == (3,)
    s = trainer.stats
    assert s.enough_data_at is not None and s.first_promotion_at >= s.enough_data_at
    assert trainer.joiner.stats.clicks_joined > 100 and trainer.window.trained_rows > 0
    # CURRENT moved under the trainer (a rollback): it restarts from the rolled-back version
    reg.rollback()
    now[0] += 2_000.0
    assert trainer.maybe_promote() is None and trainer.version == parent
    # ... and an untrained candidate (a copy of the current model) is never published, however long it waits;
    # an impression consumed after its click window closed (a late backlog) is skipped
    now[0] += 2_000.0
    stale = ImpressionEvent(event_id="old", time_s=t0, user_id="U1", news_ids=list(catalogue.news_ids[:3]),
                            impression_id="old")
    assert asyncio.run(trainer.handle([stale])) == [] and trainer.stats.late_impressions == 1
    assert trainer.stats.promotions == 1 and reg.current() == parent


def test_a_backlog_drained_one_partition_at_a_time_loses_no_impression(tiny):
    """Kafka orders events within a partition only: a trainer behind on a backlog may read one partition's hours
    before another's. The join waits for the slowest partition instead of declaring the others' events late."""
    ds, spec, reg = tiny
    t0 = ds.origin.timestamp() + float(np.quantile(ds.train.imp_t, 0.6))
    store = InMemoryFeatureStore()
    catalogue = dataclasses.replace(ds.articles, publish_s=ds.origin.timestamp() + ds.articles.publish_s,
                                    expire_s=ds.origin.timestamp() + ds.articles.expire_s)
    events = [e for e in _stream_events(ds.world_dir, t0, 1_500) if isinstance(e, ImpressionEvent | ClickEvent)]
    parts = [("impressions" if isinstance(e, ImpressionEvent) else "clicks", zlib.crc32(e.user_id.encode()) % 2)
             for e in events]
    order = sorted(range(len(events)), key=lambda i: (parts[i][1], parts[i][0]))  # partition by partition
    cfg = OnlineTrainingConfig(min_train_rows=10**6, join_window_s=120.0)  # the join only: no training

    async def run():
        await materialize(store, ds, spec, now_s=t0)
        trainer = OnlineTrainer(reg, store, cfg, catalogue=catalogue, clock=lambda: 0.0)
        trainer.watermark.expect(set(parts), 0.0)
        for s in range(0, len(order), 200):
            idx = order[s:s + 200]
            await trainer.handle([events[i] for i in idx], [parts[i] for i in idx])
        return trainer

    trainer = asyncio.run(run())
    imps = [e for e in events if isinstance(e, ImpressionEvent)]
    assert trainer.stats.late_impressions == 0
    assert trainer.joiner.stats.impressions > 0.9 * len(imps)  # cold readers aside, every impression was joined
    assert trainer.joiner.stats.clicks_joined > 0.9 * sum(isinstance(e, ClickEvent) for e in events)
