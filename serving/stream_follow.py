"""Each serving replica's view of the stream: it tails `item-vectors` into its own live index and item table and
`model-updates` to check the registry at once. Every replica reads every partition (no consumer group).

Start: the catalogue (if any) is already loaded; then the vector snapshot (if any), then the topic from the
snapshot's offsets (or from the beginning), and /readyz turns ready once that backlog is applied.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import numpy as np
from fastapi import FastAPI
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from newsrec.service_process import ServiceError
from recsys.dataset import Articles
from serving.pipeline import Pipeline
from streaming.events import BadEvent, ItemVectorEvent, ModelUpdateEvent, parse_event
from streaming.ingest import articles_table, encode
from streaming.settings import StreamSettings
from streaming.tail import TailUnavailable, TopicMissing, TopicTail
from streaming.topics import ensure_topics
from streaming.vector_snapshot import FoldedVector, VectorFold

log = logging.getLogger("newsrec.serving.stream")
POLL_MS = 200
CATALOGUE_EVERY_S = 5.0   # how stale the hot-swap path's article list may get (the rest is reconciled after)
RETRY_S = (0.5, 1, 2, 5)
LAG_EVERY_S = 5.0


def apply_vectors(p: Pipeline, items: Sequence[FoldedVector], now_s: float) -> int:
    """Upsert articles into the pipeline's item table and live index; an article already expired at now_s (a
    takedown) leaves the index. Vectors from another model version than p's are re-encoded with p's own item tower
    (an index never mixes two versions' spaces). Returns how many were re-encoded."""
    if not items:
        return 0
    spec = p.backend.spec
    own = np.array([i.model_version == p.model_version and i.vector.shape == (spec.embedding_dim,) for i in items])
    vecs = np.zeros((len(items), spec.embedding_dim), np.float32)
    if own.any():
        vecs[own] = np.stack([i.vector for i, ok in zip(items, own) if ok])
    if not own.all():
        vecs[~own] = encode(p.backend.item_vectors, spec, [i.article for i, ok in zip(items, own) if not ok])
    t = articles_table([i.article for i in items])
    p.items.upsert(t.news_ids, vecs, t.subcategory_name, t.category_name, t.publish_s)
    live = t.expire_s > now_s
    if live.any():
        p.index.upsert(t.news_ids[live], vecs[live], t.publish_s[live], t.expire_s[live])
    if not live.all():
        p.index.remove(t.news_ids[~live])
    return int((~own).sum())


def unreflected(p: Pipeline, items: Sequence[FoldedVector], now_s: float) -> list[FoldedVector]:
    """Items a (newly swapped-in) pipeline does not show as the stream last said: absent from its item table, or
    live but absent from its index (or with another lifetime), or dead but still in it."""
    rows = p.items.snapshot.row
    snap = p.index.snapshot
    expire = dict(zip(snap.news_ids, snap.expire_s))
    out = []
    for i in items:
        a = i.article
        in_index = expire.get(a.news_id)
        if a.news_id not in rows or (in_index != a.expire_s if a.expire_s > now_s else in_index is not None):
            out.append(i)
    return out


def merged_catalogue(base: Articles | None, items: Sequence[FoldedVector]) -> Articles | None:
    """The catalogue plus the streamed articles (the stream's version wins): what a hot swap encodes."""
    if not items:
        return base
    streamed = articles_table([i.article for i in items])
    if base is None:
        return streamed
    streamed_ids = set(streamed.index)   # np.isin on object arrays is O(n * m): 1.5 s at 12k x 12k
    keep = np.fromiter((n not in streamed_ids for n in base.news_ids), bool, count=len(base.news_ids))
    ids = np.concatenate([base.news_ids[keep], streamed.news_ids])
    return Articles(news_ids=ids, index={n: i for i, n in enumerate(ids)},
                    category_name=np.concatenate([base.category_name[keep], streamed.category_name]),
                    subcategory_name=np.concatenate([base.subcategory_name[keep], streamed.subcategory_name]),
                    text=[t for t, k in zip(base.text, keep) if k] + streamed.text,
                    publish_s=np.concatenate([base.publish_s[keep], streamed.publish_s]),
                    expire_s=np.concatenate([base.expire_s[keep], streamed.expire_s]))


class StreamFollower:
    """Started by the app's lifespan as one task (`run`). Sets app.state.stream_ready when the backlog that was
    on the topic at start is applied, or after catchup_timeout_s without a broker (then it serves what it has
    and keeps retrying: a replica should not stay out of rotation because the stream is down)."""

    def __init__(self, app: FastAPI, stream: StreamSettings, registry: CollectorRegistry,
                 catchup_timeout_s: float = 30.0):
        self.app, self.stream, self.catchup_timeout_s = app, stream, catchup_timeout_s
        self.topic, self.updates_topic = stream.topics.name("item_vectors"), stream.topics.name("model_updates")
        self.fold = VectorFold(self.topic)
        self.base: Articles | None = app.state.catalogue
        self.applied_at: dict[str, float] = {}   # news id -> wall time it became searchable here (freshness)
        self._index = None                       # the live index the fold was last applied to
        self._catalogue_t = 0.0
        self.applied = Counter("newsrec_stream_articles_total", "Item vectors applied from the stream, by path",
                               ["path"], registry=registry)
        self.bad = Counter("newsrec_stream_bad_records_total", "Records on item-vectors that were not valid events",
                           registry=registry)
        self.lag = Gauge("newsrec_stream_lag_records", "item-vectors records behind the end of the topic",
                         registry=registry)
        app.state.stream_ready = False
        self.started = asyncio.Event()   # caught up, or the broker is down: the app's startup may go on

    async def run(self) -> None:
        started = time.monotonic()
        if self.stream.vector_snapshot is not None:
            snap = await asyncio.to_thread(VectorFold.load, self.stream.vector_snapshot, self.topic)
            if snap is not None:
                self.fold = snap
                await self._apply(list(snap.items.values()), "snapshot")
                log.info("vector snapshot: %d articles, offsets %s", len(snap.items), snap.offsets)
        attempt = 0
        while True:
            try:
                tail = await TopicTail.open(self.stream.bootstrap_servers,
                                            {self.topic: dict(self.fold.offsets), self.updates_topic: "end"},
                                            "newsrec-serving")
            except TopicMissing:   # a replica may start before any worker has created the topics
                with contextlib.suppress(ServiceError, KafkaError, OSError):
                    await asyncio.to_thread(ensure_topics, self.stream)
                    continue
            except TailUnavailable as exc:
                self.started.set()   # startup does not wait for a broker that is down
                if not self.app.state.stream_ready and time.monotonic() - started > self.catchup_timeout_s:
                    log.error("stream unreachable for %.0f s, serving without it: %s", self.catchup_timeout_s, exc)
                    self.app.state.stream_ready = True
                await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
                attempt += 1
                continue
            attempt = 0
            try:
                await self._follow(tail)
            except TailUnavailable as exc:
                log.warning("stream: %s; reconnecting", exc)
            except Exception:  # noqa: BLE001 -- a bug applying a batch must not end following for good
                log.exception("stream: applying item-vectors failed; reconnecting after the failed batch")
                await asyncio.sleep(RETRY_S[-1])
            finally:
                await tail.close()

    async def _follow(self, tail: TopicTail) -> None:
        target = await tail.end_offsets(self.topic)   # the backlog to apply before ready
        lag_t = time.monotonic()
        while True:
            records = await tail.poll(POLL_MS)
            items = []
            for r in records:
                if r.topic == self.updates_topic:
                    self._model_update(r.value)
                    continue
                try:
                    items.append(FoldedVector.of(parse_event(r.value or b"", (ItemVectorEvent,))))
                except BadEvent as exc:
                    self.bad.inc()
                    log.warning("item-vectors %d@%d skipped: %s", r.partition, r.offset, exc)
                self.fold.advance(r.partition, r.offset + 1)
            if items:
                self.fold.apply(items)
                await self._apply(items, "stream")
            await self._reconcile()
            if time.monotonic() - lag_t > LAG_EVERY_S or not self.app.state.stream_ready:
                ahead = await tail.positions(self.topic)
                if self.app.state.stream_ready:
                    lag_t, target = time.monotonic(), await tail.end_offsets(self.topic)
                self.lag.set(sum(max(0, o - ahead.get(p, 0)) for p, o in target.items()))
                if not self.app.state.stream_ready and all(ahead.get(p, 0) >= o for p, o in target.items()):
                    self.app.state.stream_ready = True
                    self.started.set()
                    log.info("stream caught up: %d streamed articles", len(self.fold.items))

    def _model_update(self, raw: bytes | None) -> None:
        try:
            event = parse_event(raw or b"", (ModelUpdateEvent,))
        except BadEvent as exc:
            log.warning("model-updates record skipped: %s", exc)
            return
        log.info("model-updates announced %s: checking the registry now", event.version)
        self.app.state.registry_poke.set()

    async def _apply(self, items: list[FoldedVector], path: str) -> None:
        p, now_s = self.app.state.pipeline, self.app.state.now()

        def apply() -> int:
            n = apply_vectors(p, items, now_s)
            # stamped in the same thread right after the swap-in: a status read seldom sees live without a time
            self.applied_at.update(dict.fromkeys((i.article.news_id for i in items), time.time()))
            return n
        reencoded = await asyncio.to_thread(apply)
        self.applied.labels(path).inc(len(items) - reencoded)
        self.applied.labels("reencoded").inc(reencoded)
        if self._index is None:
            self._index = p.index

    async def _reconcile(self) -> None:
        """After a hot swap, apply what the new pipeline lacks; keep the swap path's article list current."""
        p = self.app.state.pipeline
        if self._index is not None and p.index is not self._index:
            self._index = p.index
            missing = await asyncio.to_thread(unreflected, p, list(self.fold.items.values()), self.app.state.now())
            if missing:
                await self._apply(missing, "after_swap")
        if self.fold.changed and time.monotonic() - self._catalogue_t > CATALOGUE_EVERY_S:
            self._catalogue_t, self.fold.changed = time.monotonic(), False
            self.app.state.catalogue = await asyncio.to_thread(merged_catalogue, self.base,
                                                               list(self.fold.items.values()))


async def start_following(app: FastAPI, stream: StreamSettings | None, follow: bool, registry: CollectorRegistry,
                          startup_timeout_s: float = 30.0) -> list[asyncio.Task]:
    """The follower's task for the app's lifespan (none when no stream is configured or following is off). Returns
    once the stream's backlog is applied (so the app starts serving with it), the broker proved down, or after
    startup_timeout_s (then /readyz waits for the rest)."""
    app.state.stream_follower = None
    if stream is None or not follow:
        return []
    follower = app.state.stream_follower = StreamFollower(app, stream, registry)
    task = asyncio.create_task(follower.run(), name="stream-follow")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(follower.started.wait(), startup_timeout_s)
    if task.done():   # a bug, not the broker: fail the startup loudly
        task.result()
    return [task]
