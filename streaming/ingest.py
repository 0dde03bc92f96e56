"""The article ingestor (`newsrec worker articles`): ArticleEvents -> the current model version's item tower ->
item features in Redis and an ItemVectorEvent per article on `item-vectors`, which every serving replica tails."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from feature_store.base import FeatureStore, ItemFeatures
from recsys.bundle import ModelBundle
from recsys.dataset import Articles
from recsys.features import FeatureSpec
from recsys.registry import ModelRegistry, RegistryError
from streaming.consumer import Delivery, Outcome
from streaming.events import ArticleEvent, ItemVectorEvent
from streaming.producer import EventPublisher
from streaming.settings import StreamSettings

log = logging.getLogger("newsrec.ingest")


def latest_per_article(events: Sequence[ArticleEvent]) -> list[ArticleEvent]:
    """One event per news id, the last one in stream order (a re-publish or a takedown supersedes the original)."""
    return list({e.news_id: e for e in events}.values())


def articles_table(events: Sequence[ArticleEvent]) -> Articles:
    """Events as the Articles arrays the item tower's inputs are built from; text = title + " " + abstract, as the
    catalogue and training build it (recsys.dataset), so a streamed article encodes exactly like a trained one."""
    ids = np.array([e.news_id for e in events], dtype=object)
    return Articles(news_ids=ids, index={n: i for i, n in enumerate(ids)},
                    category_name=np.array([e.category for e in events], dtype=object),
                    subcategory_name=np.array([e.subcategory for e in events], dtype=object),
                    text=[f"{e.title} {e.abstract}" for e in events],
                    publish_s=np.array([e.time_s for e in events], np.float64),
                    expire_s=np.array([e.expire_s for e in events], np.float64))


def encode(item_vectors: Callable[[dict[str, np.ndarray]], np.ndarray], spec: FeatureSpec,
           events: Sequence[ArticleEvent]) -> np.ndarray:
    """(n, D) float32 item-tower vectors of n articles; checks the output length (a short batch is a bug)."""
    vectors = np.asarray(item_vectors(articles_table(events).model_inputs(spec)), np.float32)
    if vectors.shape != (len(events), spec.embedding_dim):
        raise ValueError(f"item tower returned {vectors.shape}, expected ({len(events)}, {spec.embedding_dim})")
    return vectors


def item_features(events: Sequence[ArticleEvent]) -> list[ItemFeatures]:
    return [ItemFeatures(e.news_id, e.category, e.subcategory, e.title, e.time_s, e.expire_s) for e in events]


def vector_event_id(article_event_id: str, model_version: str) -> str:
    """Deterministic: a redelivered article encoded by the same version yields the same id (dedup downstream)."""
    return "iv-" + hashlib.sha256(f"{article_event_id}|{model_version}".encode()).hexdigest()[:32]


def vector_events(events: Sequence[ArticleEvent], vectors: np.ndarray, model_version: str, now_s: float
                  ) -> list[ItemVectorEvent]:
    if len(vectors) != len(events):
        raise ValueError(f"{len(vectors)} vectors for {len(events)} articles")
    return [ItemVectorEvent(event_id=vector_event_id(e.event_id, model_version), time_s=now_s, article=e,
                            vector=[float(x) for x in v], model_version=model_version)
            for e, v in zip(events, vectors)]


class RegistryItemEncoder:
    """The registry's current version's item tower (sha256-verified ONNX), reloaded when the registry moves.

    A version that fails verification or loading is refused and the previous one keeps encoding, as in serving.
    """

    def __init__(self, registry: Path | ModelRegistry, intra_op_threads: int = 1):
        self.registry = registry if isinstance(registry, ModelRegistry) else ModelRegistry(registry)
        self.intra_op_threads = intra_op_threads
        self._lock = threading.Lock()   # refresh and encode run in worker threads
        self._bundle: ModelBundle | None = None
        self.version: str | None = None
        self._refused: str | None = None

    def refresh(self) -> str:
        """Follow the registry's current version; returns the version now encoding. Raises only before the first
        successful load (no model at all: the ingestor cannot work)."""
        with self._lock:
            try:
                current = self.registry.current()
            except (RegistryError, OSError) as exc:
                if self._bundle is None:
                    raise
                log.warning("registry unreadable, still encoding with %s: %s", self.version, exc)
                return self.version
            if current is not None and current not in (self.version, self._refused):
                try:
                    loaded = self.registry.load(current)
                    self._bundle, self.version = ModelBundle.load(loaded.path, self.intra_op_threads), loaded.version
                    log.info("item tower of model version %s loaded", self.version)
                except (RegistryError, OSError, ValueError) as exc:
                    if self._bundle is None:
                        raise
                    self._refused = current
                    log.error("refusing model version %s, still encoding with %s: %s", current, self.version, exc)
            if self._bundle is None:
                raise RegistryError(f"no current model version in {self.registry.root}")
            return self.version

    def encode(self, events: Sequence[ArticleEvent]) -> tuple[str, np.ndarray]:
        """(model version, (n, D) vectors): one version for the whole batch, never a mix."""
        with self._lock:
            bundle, version = self._bundle, self.version
        if bundle is None:
            raise RegistryError("call refresh() first: no model loaded")
        return version, encode(bundle.item_vectors, bundle.spec, events)


class ArticleIngestor:
    """The article worker's BatchHandler: encode, write item features, publish vectors. handle() returns only when
    both writes have landed (the store call returned, the broker acked every vector), so the consumer may then
    commit; an exception means nothing is committed, and the redelivered batch yields the same ids and values."""

    name = "articles"
    event_types = (ArticleEvent,)

    def __init__(self, encoder: RegistryItemEncoder, store: FeatureStore, publisher: EventPublisher,
                 stream: StreamSettings, clock: Callable[[], float] = time.time):
        self.encoder, self.store, self.publisher, self.clock = encoder, store, publisher, clock
        self.topic = stream.topics.name("item_vectors")

    async def start(self) -> None:
        await self.store.start()
        await asyncio.to_thread(self.encoder.refresh)   # no model: fail at start, not at the first article

    async def handle(self, batch: Sequence[Delivery]) -> Outcome:
        events = latest_per_article([d.event for d in batch])
        if events:
            await asyncio.to_thread(self.encoder.refresh)
            version, vectors = await asyncio.to_thread(self.encoder.encode, events)
            out = vector_events(events, vectors, version, self.clock())
            await self.store.put_items(item_features(events))
            await self.publisher.publish_many([(self.topic, e.article.news_id, e) for e in out])
        return Outcome(applied=len(batch))   # an article superseded later in the same batch was applied too

    async def close(self) -> None:
        await self.store.close()
