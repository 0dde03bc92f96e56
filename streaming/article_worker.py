"""`newsrec worker articles` assembled: the article ingestor in the `articles` consumer group, and (optionally) the
vector snapshot writer, which tails all of `item-vectors` and rewrites the snapshot file serving replicas start from.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from feature_store.redis_store import RedisFeatureStore
from recsys.registry import default_registry_dir
from streaming.consumer import ConsumerSettings, StreamConsumer
from streaming.events import BadEvent, ItemVectorEvent, parse_event
from streaming.feature_updater import RedisSettings
from streaming.ingest import ArticleIngestor, RegistryItemEncoder
from streaming.producer import EventPublisher
from streaming.settings import StreamSettings
from streaming.tail import TailUnavailable, TopicTail
from streaming.vector_snapshot import FoldedVector, VectorFold

log = logging.getLogger("newsrec.article_worker")


class SnapshotWriter:
    """Folds item-vectors (from its own last snapshot on) and writes the snapshot every `every_s` when it changed,
    and once more on stop. Pruning uses stream time (the newest article's publish time), not this host's clock,
    so a replayed old world is pruned the same way as live news."""

    def __init__(self, stream: StreamSettings, path: Path, every_s: float = 30.0):
        self.stream, self.path, self.every_s = stream, path, every_s
        self.topic = stream.topics.name("item_vectors")
        self.fold = VectorFold.load(path, self.topic) or VectorFold(self.topic)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        tail = None
        try:
            while tail is None and not self._stop.is_set():
                try:
                    tail = await TopicTail.open(self.stream.bootstrap_servers, {self.topic: dict(self.fold.offsets)},
                                                "newsrec-snapshot", fetch_max_wait_ms=500)
                except TailUnavailable as exc:
                    log.warning("snapshot writer waiting for the stream: %s", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 2.0)
            loop = asyncio.get_running_loop()
            saved_t = loop.time()
            while tail is not None and not self._stop.is_set():
                for r in await tail.poll(500):
                    try:
                        self.fold.apply([FoldedVector.of(parse_event(r.value or b"", (ItemVectorEvent,)))])
                    except BadEvent as exc:
                        log.warning("item-vectors %d@%d left out of the snapshot: %s", r.partition, r.offset, exc)
                    self.fold.advance(r.partition, r.offset + 1)
                if loop.time() - saved_t >= self.every_s:
                    saved_t = loop.time()
                    await self.save()
        finally:
            if tail is not None:
                await self.save()
                await tail.close()

    async def save(self) -> None:
        if not self.fold.changed:
            return
        newest = max((i.article.time_s for i in self.fold.items.values()), default=0.0)
        self.fold.prune(newest)
        await asyncio.to_thread(self.fold.save, self.path)
        log.info("vector snapshot: %d articles at offsets %s -> %s", len(self.fold.items), self.fold.offsets,
                 self.path)


class ArticleWorkerSettings(BaseSettings):
    """Environment: NEWSREC_STREAM__* (incl. VECTOR_SNAPSHOT), NEWSREC_STORE__*, NEWSREC_CONSUMER__*, ..."""

    model_config = SettingsConfigDict(env_prefix="NEWSREC_", env_nested_delimiter="__", frozen=True)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    store: RedisSettings = Field(default_factory=RedisSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    registry: Path = Field(default_factory=default_registry_dir)   # its current version's item tower encodes
    snapshot_every_s: float = Field(default=30.0, gt=0)
    intra_op_threads: int = Field(default=1, ge=1)


def run_article_worker(settings: ArticleWorkerSettings) -> None:
    """Until SIGTERM/SIGINT: then the batch in hand is finished and committed, the snapshot written, exit 0."""
    async def main() -> None:
        stream, s = settings.stream, settings.store
        publisher = EventPublisher(stream, client_id="newsrec-articles")
        store = RedisFeatureStore(s.redis_url, s.prefix, socket_timeout_ms=s.socket_timeout_ms,
                                  connect_timeout_ms=s.connect_timeout_ms)
        ingestor = ArticleIngestor(RegistryItemEncoder(settings.registry, settings.intra_op_threads), store,
                                   publisher, stream)
        worker = StreamConsumer(stream, settings.consumer, [stream.topics.name("articles")], ingestor, publisher)
        writer = (SnapshotWriter(stream, stream.vector_snapshot, settings.snapshot_every_s)
                  if stream.vector_snapshot else None)

        def stop() -> None:
            worker.stop()
            if writer is not None:
                writer.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        tasks = [asyncio.create_task(worker.run())] + ([asyncio.create_task(writer.run())] if writer else [])
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop()  # one part failed (or both stopped): stop the other too, then surface the error
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    asyncio.run(main())
