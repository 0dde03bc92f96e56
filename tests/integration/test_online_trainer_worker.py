"""The online trainer worker against the real broker and Redis: the tiny world's impressions and clicks go into
Kafka, the trainer builds rows from Redis, fine-tunes, publishes and promotes a version the registry verifies, and
announces it on model-updates."""
from __future__ import annotations

import asyncio
import shutil
import time
from datetime import UTC

import httpx
import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition

from data.events import iter_world_events
from feature_store.materialize import materialize_world
from recsys.dataset import load_dataset
from recsys.registry import ModelRegistry
from streaming.consumer import ConsumerSettings
from streaming.events import ModelUpdateEvent, parse_event
from streaming.feature_updater import RedisSettings
from streaming.online_training import OnlineTrainingConfig
from streaming.producer import EventPublisher
from streaming.settings import StreamSettings, Topics
from streaming.simulate import to_stream
from streaming.topics import ensure_topics
from streaming.trainer_worker import TrainerSettings, trainer_consumer

pytestmark = pytest.mark.integration


def _world_events(world, t0_s: float, limit: int) -> list[tuple[str, str, object]]:
    """(topic attribute, key, event) of the world after t0, stamped with their own world times (Unix s)."""
    out = []
    for e in iter_world_events(world):
        if (t := e.time.replace(tzinfo=UTC).timestamp()) >= t0_s:  # the world's naive times are UTC
            out.append(to_stream(e, t, "it", 1.0))
        if len(out) >= limit:
            break
    return out


async def _ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url, timeout=1.0)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} not ready in {timeout_s} s")


def _first_update(bootstrap: str, topic: str, timeout_s: float) -> ModelUpdateEvent | None:
    """The first record on the topic (one partition), read without a consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                return parse_event(records[0].value, (ModelUpdateEvent,))
        return None
    finally:
        consumer.close()


def test_trainer_worker_promotes_a_verified_version_and_announces_it(services, tiny_random_model, unique_name,
                                                                      redis_client, tmp_path):
    world, source = tiny_random_model
    shutil.copytree(source, tmp_path / "registry")
    registry = ModelRegistry(tmp_path / "registry")
    parent = registry.current()
    ds = load_dataset(world)
    t0 = ds.origin.timestamp() + float(np.quantile(ds.train.imp_t, 0.6))
    materialize_world(world, services.redis_url, unique_name, now_s=t0)  # the store as of t0
    stream = StreamSettings(bootstrap_servers=services.kafka_bootstrap, topics=Topics(prefix=f"{unique_name}-"))
    ensure_topics(stream)
    settings = TrainerSettings(
        stream=stream, store=RedisSettings(redis_url=services.redis_url, prefix=unique_name),
        consumer=ConsumerSettings(group_id=unique_name), registry=registry.root, catalogue_dir=world,
        # auc_tolerance: from a random ranker, AUC on ~30 held-out impressions is noise (a fresh-clone run saw the
        # candidate trail by 0.003 while its log loss fell 0.70 -> 0.65); log loss must still improve (gate + assert)
        training=OnlineTrainingConfig(min_train_rows=500, min_holdout_impressions=30, eval_every_s=0.0,
                                      min_promote_interval_s=3_600.0, join_window_s=120.0, max_steps_per_batch=8,
                                      lr=1e-3, auc_tolerance=0.05))
    events = _world_events(world, t0, 6_000)

    async def run() -> tuple[ModelUpdateEvent | None, str]:
        consumer = trainer_consumer(settings)
        publisher = EventPublisher(stream)
        # The whole stream is published before the worker starts: it drains a backlog, where Kafka orders events
        # within a partition only (one partition may be read hours of event time ahead of another). A watermark
        # taken from any partition's newest event then called every other partition's impressions late: that was
        # the fresh-clone flake (a slow first batch let the backlog build up; no row, no gate, no update).
        for s in range(0, len(events), 500):
            await publisher.publish_many([(stream.topics.name(t), k, e) for t, k, e in events[s:s + 500]])
        task = asyncio.create_task(consumer.run())
        try:
            while consumer.http.port == 0:  # the endpoint binds first thing in run()
                await asyncio.sleep(0.05)
            await _ready(f"http://127.0.0.1:{consumer.http.port}/readyz", 60.0)
            update = await asyncio.to_thread(_first_update, stream.bootstrap_servers,
                                             stream.topics.name("model_updates"), 90.0)
            async with httpx.AsyncClient() as client:
                metrics = (await client.get(f"http://127.0.0.1:{consumer.http.port}/metrics")).text
            return update, metrics
        finally:
            consumer.stop()  # SIGTERM's path: finish the batch, commit, leave the group
            await asyncio.wait_for(task, 30.0)
            await publisher.close()

    update, metrics = asyncio.run(run())
    assert update is not None, "no model update announced within 90 s"
    assert update.parent == parent and registry.current() == update.version
    child = registry.load(update.version)  # every file's sha256 checked against its manifest
    assert child.parent == parent and child.metrics["online"]["candidate"]["logloss"] < \
        child.metrics["online"]["parent"]["logloss"]
    assert update.metrics["candidate_logloss"] == pytest.approx(child.metrics["online"]["candidate"]["logloss"])
    assert 'newsrec_trainer{stat="promotions"} 1.0' in metrics
    assert 'newsrec_trainer{stat="late_impressions"} 0.0' in metrics  # nothing skipped
    assert 'newsrec_stream_events_total{outcome="applied",worker="trainer"}' in metrics
