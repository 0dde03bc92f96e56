"""`newsrec worker trainer`: the online trainer as a consumer-group member over impressions, clicks and articles;
announces each promoted version on `model-updates`. Readiness once the current version is loaded and the group
joined; on SIGTERM it finishes its batch, commits, exits (pending unlabelled rows are dropped, not replayed)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from feature_store.redis_store import RedisFeatureStore
from recsys.registry import ModelRegistry, default_registry_dir
from streaming.consumer import ConsumerSettings, Delivery, Outcome, StreamConsumer
from streaming.events import ArticleEvent, ClickEvent, ImpressionEvent, ModelUpdateEvent
from streaming.feature_updater import RedisSettings
from streaming.online_training import OnlineTrainingConfig
from streaming.producer import BrokerUnavailable, EventPublisher
from streaming.settings import StreamSettings
from streaming.topics import topic_partitions
from streaming.trainer import OnlineTrainer

log = logging.getLogger("newsrec.streaming.trainer")


class TrainerSettings(BaseSettings):
    """Environment: NEWSREC_STREAM__*, NEWSREC_STORE__*, NEWSREC_CONSUMER__*, NEWSREC_TRAINING__*, NEWSREC_REGISTRY."""

    model_config = SettingsConfigDict(env_prefix="NEWSREC_", env_nested_delimiter="__", frozen=True)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    store: RedisSettings = Field(default_factory=RedisSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    training: OnlineTrainingConfig = Field(default_factory=OnlineTrainingConfig)
    registry: Path = Field(default_factory=default_registry_dir)
    catalogue_dir: Path | None = None   # a MIND world whose articles the trainer knows from the start
    threads: int = Field(default=1, ge=1)  # torch threads: one core is serving's


class TrainerHandler:
    """The BatchHandler around OnlineTrainer; an announcement the broker refuses is retried with the next batch
    (replicas also poll the registry, so a lost announcement delays a swap, never loses it)."""

    name = "trainer"
    event_types = (ImpressionEvent, ClickEvent, ArticleEvent)

    def __init__(self, settings: TrainerSettings, store: RedisFeatureStore, publisher: EventPublisher):
        self.settings, self.store, self.publisher = settings, store, publisher
        self.trainer: OnlineTrainer | None = None
        self._unannounced: list[ModelUpdateEvent] = []
        self.gauge: Gauge | None = None

    def attach_metrics(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge("newsrec_trainer", "Online trainer counters and timings (see stat)", ["stat"],
                           registry=registry)

    async def start(self) -> None:
        from recsys.catalogue import load_catalogue

        await self.store.start()
        s = self.settings
        catalogue = await asyncio.to_thread(load_catalogue, s.catalogue_dir) if s.catalogue_dir else None
        self.trainer = await asyncio.to_thread(OnlineTrainer, ModelRegistry(s.registry), self.store, s.training,
                                               catalogue, threads=s.threads)
        # the join waits for every partition of impressions and clicks until each is heard from (or idle)
        partitions = topic_partitions(s.stream)
        joined = [s.stream.topics.name(t) for t in ("impressions", "clicks")]
        self.trainer.watermark.expect([(t, p) for t in joined for p in range(partitions[t])], self.trainer.clock())

    async def handle(self, batch: Sequence[Delivery]) -> Outcome:
        self._unannounced += await self.trainer.handle([d.event for d in batch],
                                                       [(d.topic, d.partition) for d in batch])
        if self._unannounced:
            try:
                await self.publisher.publish(self.settings.stream.topics.name("model_updates"), None,
                                             self._unannounced)
                self._unannounced = []
            except BrokerUnavailable as exc:
                log.warning("model update not announced yet (%s); retrying with the next batch", exc)
        self._export()
        return Outcome(applied=len(batch))

    def _export(self) -> None:
        if self.gauge is None:
            return
        t, st = self.trainer, self.trainer.stats
        values = {"events": st.events, "late_impressions": st.late_impressions, "steps": st.steps,
                  "rows_trained": st.rows_trained, "train_seconds": st.train_seconds, "evaluations": st.evaluations, "promotions": st.promotions,
                  "refused": st.refused, "pending_impressions": t.joiner.pending,
                  "labelled_impressions": t.joiner.stats.labelled, "leaked_impressions": t.joiner.stats.leaked,
                  "holdout_impressions": len(t.window.holdout), "unknown_items": t.rows.unknown_items}
        if st.first_promotion_at is not None:
            values["first_promotion_delay_seconds"] = st.first_promotion_at - st.enough_data_at
        for k, v in values.items():
            self.gauge.labels(k).set(v)

    async def close(self) -> None:
        await self.store.close()


def trainer_consumer(settings: TrainerSettings) -> StreamConsumer:
    """The worker, wired from its settings (nothing connects or loads until run())."""
    s = settings.store
    store = RedisFeatureStore(s.redis_url, s.prefix, socket_timeout_ms=s.socket_timeout_ms,
                              connect_timeout_ms=s.connect_timeout_ms)
    publisher = EventPublisher(settings.stream, client_id="newsrec-trainer")
    handler = TrainerHandler(settings, store, publisher)
    topics = [settings.stream.topics.name(t) for t in ("impressions", "clicks", "articles")]
    consumer = StreamConsumer(settings.stream, settings.consumer, topics, handler, publisher)
    handler.attach_metrics(consumer.metrics.registry)
    return consumer
