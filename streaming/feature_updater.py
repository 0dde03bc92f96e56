"""The feature updater (`newsrec worker features`): a consumer group over the clicks and impressions topics that
applies each event to Redis (history, profile, popularity and topic counters) exactly once, by event id."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from feature_store.base import FeatureStore
from feature_store.redis_store import RedisFeatureStore
from recsys.registry import ModelRegistry, RegistryError
from streaming.consumer import Delivery, Outcome, StreamConsumer
from streaming.events import ClickEvent, ImpressionEvent
from streaming.handlers import Labels, Rejected, labels_of, news_ids, to_updates
from streaming.worker_settings import RedisSettings, WorkerSettings

__all__ = ["FeatureUpdater", "FeatureUpdaterSettings", "RedisSettings", "feature_updater_consumer"]

log = logging.getLogger("newsrec.streaming.features")


class FeatureUpdaterSettings(WorkerSettings):
    """WorkerSettings plus the feature updater's own (NEWSREC_POSITION_PRIOR, NEWSREC_UNKNOWN_NEWS_GRACE_MS, ...).

    The expected-clicks weights by slot and the history bound come from the registry's current model version;
    position_prior / history_len here are used only when the registry has none."""

    position_prior: tuple[float, ...] = ()
    history_len: int = Field(default=50, ge=1)
    registry_poll_s: float = Field(default=10.0, gt=0)
    # An event naming an article not in Redis yet: looked up again for this long, then dead-lettered. Events
    # from the API name only articles it already serves, so this only covers direct producers racing the ingestor.
    unknown_news_grace_ms: float = Field(default=500.0, ge=0)
    label_cache_size: int = Field(default=200_000, ge=1)


class ModelSpecSource:
    """position_prior and history_len of the registry's current version, re-read when CURRENT changes (promote
    or rollback), at most every poll_s; the configured values when the registry has no version."""

    def __init__(self, registry: Path, fallback_prior: Sequence[float], fallback_history_len: int, poll_s: float):
        self.registry, self.poll_s = ModelRegistry(registry), poll_s
        self.fallback = (tuple(fallback_prior), fallback_history_len)
        self.version: str | None = None
        self.position_prior, self.history_len = self.fallback
        self._next_check = 0.0

    def refresh(self) -> None:
        if time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + self.poll_s
        try:
            current = self.registry.current() if self.registry.root.is_dir() else None
            if current is None or current == self.version:
                return
            spec = self.registry.get(current).feature_spec
        except (RegistryError, OSError, KeyError) as exc:
            log.warning("keeping position prior of %s: cannot read the registry (%s)", self.version, exc)
            return
        self.version = current
        self.position_prior = tuple(spec.get("position_prior") or self.fallback[0])
        self.history_len = int(spec.get("history_len", self.fallback[1]))
        log.info("position prior and history bound of model version %s", current)


class ArticleLabelCache:
    """news_id -> (subcategory, category), read from the store's item features and kept: an article's labels
    never change. Unknown articles are not cached (the ingestor may write them a moment later)."""

    def __init__(self, store: FeatureStore, max_size: int):
        self.store, self.max_size = store, max_size
        self._labels: dict[str, Labels] = {}

    async def resolve(self, ids: set[str]) -> dict[str, Labels]:
        misses = [n for n in ids if n not in self._labels]
        if misses:
            if len(self._labels) + len(misses) > self.max_size:
                self._labels.clear()  # simplest bound; refilled from Redis in one round trip per batch
            self._labels.update(labels_of(await self.store.get_item_features(misses)))
        return {n: self._labels[n] for n in ids if n in self._labels}


class FeatureUpdater:
    """The BatchHandler: one label lookup and one pipelined write (a Lua call per event) per batch."""

    name = "features"
    event_types = (ClickEvent, ImpressionEvent)  # each on its own topic (feature_updater_consumer)

    def __init__(self, store: FeatureStore, spec: ModelSpecSource, unknown_grace_ms: float, cache_size: int):
        self.store, self.spec, self.unknown_grace_s = store, spec, unknown_grace_ms / 1e3
        self.labels = ArticleLabelCache(store, cache_size)

    async def start(self) -> None:
        self.spec.refresh()
        if not self.spec.position_prior:
            raise RuntimeError(f"no position prior: the registry {self.spec.registry.root} has no current version; "
                               "promote one or set NEWSREC_POSITION_PRIOR")
        await self.store.start()

    async def handle(self, batch: Sequence[Delivery]) -> Outcome:
        self.spec.refresh()
        events = [d.event for d in batch]
        wanted = news_ids(events)
        labels = await self.labels.resolve(wanted)
        deadline = time.monotonic() + self.unknown_grace_s
        while len(labels) < len(wanted) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # only when an article is unknown: the ingestor may be writing it right now
            labels = await self.labels.resolve(wanted)
        planned = to_updates(events, labels, self.spec.position_prior)
        updates = [u for u in planned if not isinstance(u, Rejected)]
        applied = await self.store.apply_updates(updates)
        rejected = tuple((d, u.reason) for d, u in zip(batch, planned) if isinstance(u, Rejected))
        return Outcome(applied=sum(applied), duplicates=len(applied) - sum(applied), rejected=rejected)

    async def close(self) -> None:
        await self.store.close()


def feature_updater_consumer(settings: FeatureUpdaterSettings) -> StreamConsumer:
    """The worker, wired from its settings (nothing connects until run())."""
    spec = ModelSpecSource(settings.registry, settings.position_prior, settings.history_len, settings.registry_poll_s)
    spec.refresh()
    s = settings.store
    store = RedisFeatureStore(s.redis_url, s.prefix, history_len=spec.history_len,
                              socket_timeout_ms=s.socket_timeout_ms, connect_timeout_ms=s.connect_timeout_ms)
    handler = FeatureUpdater(store, spec, settings.unknown_news_grace_ms, settings.label_cache_size)
    topics = {settings.stream.topics.name("clicks"): (ClickEvent,),
              settings.stream.topics.name("impressions"): (ImpressionEvent,)}
    return StreamConsumer(settings.stream, settings.consumer, topics, handler)
