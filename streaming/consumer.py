"""The at-least-once loop every stream worker runs: poll a batch -> parse (malformed -> dead-letter topic with the
reason) -> the worker's BatchHandler writes its sinks -> commit the offsets only after those writes landed.
A crash replays at most the uncommitted batch; handlers make that harmless by writing idempotently (event ids)."""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata
from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field

from streaming.events import BadEvent, _Event as Event, dead_letter, parse_event
from streaming.producer import EventPublisher
from streaming.settings import StreamSettings
from streaming.topics import ensure_topics
from streaming.worker_http import WorkerHttp, WorkerMetrics

log = logging.getLogger("newsrec.streaming.consumer")


@dataclass(frozen=True)
class Delivery:
    """One record that parsed as an event the handler accepts; key/value are kept raw for the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event: Event


@dataclass(frozen=True)
class Outcome:
    """What a handler did with a batch: applied + duplicates + len(rejected) == len(batch)."""

    applied: int = 0
    duplicates: int = 0                                    # redelivered events its sink had already applied
    rejected: tuple[tuple[Delivery, str], ...] = ()        # valid JSON it cannot apply, with the reason


class BatchHandler(Protocol):
    """A worker's sink side (feature updater, article ingestor, online trainer), driven by StreamConsumer.

    handle() must return only after every write of the batch has landed, because the consumer commits the batch's
    offsets right after; it must be idempotent, because a crash before the commit redelivers the batch. A record it
    cannot apply goes into Outcome.rejected (to the dead-letter topic), never into an exception. An exception means
    "the sink failed": nothing is committed, the batch is polled again after a backoff.
    """

    name: str                              # the worker's name: group id default, dead-letter `worker`, metrics
    event_types: tuple[type[Event], ...]   # what it accepts (per-topic types given to StreamConsumer narrow it)

    async def start(self) -> None:
        """Connect the sinks; raise if they are unreachable (the worker then exits non-zero)."""
        ...

    async def handle(self, batch: Sequence[Delivery]) -> Outcome: ...

    async def close(self) -> None: ...


class ConsumerSettings(BaseModel):
    """The loop's knobs. Latency first: small poll and fetch waits, and every batch is whatever is available."""

    model_config = ConfigDict(frozen=True)
    group_id: str | None = None          # default: "newsrec-{handler.name}"
    max_records: int = Field(default=500, ge=1)      # per batch: one Redis pipeline of this many scripts
    poll_timeout_ms: int = Field(default=100, ge=1)  # bounds how late a SIGTERM is noticed
    fetch_max_wait_ms: int = Field(default=10, ge=0)  # the broker's wait for data: an upper bound on added latency
    auto_offset_reset: str = "earliest"  # a new group starts at the oldest retained record
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: any free port (logged)
    retry_backoff_ms: tuple[int, int] = (100, 5_000)      # first and largest wait after a failed batch


class _Membership(ConsumerRebalanceListener):
    """Runs inside poll() on the Kafka thread. Nothing is uncommitted at a rebalance: every batch is committed
    before the next poll, so revocation only drops the revoked partitions' lag gauges."""

    def __init__(self, metrics: WorkerMetrics):
        self.metrics, self.joined = metrics, False

    def on_partitions_revoked(self, revoked) -> None:
        for tp in revoked:
            try:
                self.metrics.lag.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass

    def on_partitions_assigned(self, assigned) -> None:
        self.joined = True
        log.info("%s: assigned %s", self.metrics.worker, sorted((tp.topic, tp.partition) for tp in assigned))


class StreamConsumer:
    """Runs one BatchHandler over `topics` (full names, or full name -> the event types that topic carries;
    a list means handler.event_types on each; any other record is dead-lettered) in a consumer group until stop() (SIGTERM): the batch in hand is finished and
    committed, then the consumer leaves the group. kafka-python's consumer is not thread-safe, so
    every call to it runs on one dedicated thread; the event loop stays free for the sinks and the HTTP endpoint."""

    def __init__(self, stream: StreamSettings, settings: ConsumerSettings,
                 topics: Sequence[str] | Mapping[str, tuple[type[Event], ...]], handler: BatchHandler,
                 publisher: EventPublisher | None = None):
        self.stream, self.settings, self.handler = stream, settings, handler
        self.topics = dict(topics) if isinstance(topics, Mapping) else {t: handler.event_types for t in topics}
        self.group_id = settings.group_id or f"newsrec-{handler.name}"
        self.publisher = publisher or EventPublisher(stream, client_id=f"newsrec-{handler.name}")
        self.metrics = WorkerMetrics(handler.name)
        self._membership = _Membership(self.metrics)
        self.http = WorkerHttp(self.metrics, lambda: self.ready, settings.metrics_host, settings.metrics_port)
        self._stop = asyncio.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-{handler.name}")
        self._consumer: KafkaConsumer | None = None
        self._started = False
        self.metrics.ready.labels(handler.name).set_function(lambda: float(self.ready))

    @property
    def ready(self) -> bool:
        return self._started and self._membership.joined and not self._stop.is_set()

    def stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group (safe to call from a signal handler)."""
        self._stop.set()

    async def _kafka(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args, **kwargs))

    def _new_consumer(self) -> KafkaConsumer:
        s = self.settings
        consumer = KafkaConsumer(
            bootstrap_servers=self.stream.bootstrap_servers, group_id=self.group_id,
            client_id=f"newsrec-{self.handler.name}", enable_auto_commit=False, auto_offset_reset=s.auto_offset_reset,
            fetch_max_wait_ms=s.fetch_max_wait_ms, max_poll_records=s.max_records, **self.stream.group_settings())
        consumer.subscribe(topics=list(self.topics), listener=self._membership)
        return consumer

    async def run(self) -> None:
        """Start the endpoint, the sinks, the topics and the group member; loop until stop(); clean up."""
        port = await self.http.start()
        log.info("%s: /readyz and /metrics on http://%s:%d", self.handler.name, self.settings.metrics_host, port)
        try:
            await self.handler.start()
            await self.publisher.start()
            await self._kafka(ensure_topics, self.stream)
            self._consumer = await self._kafka(self._new_consumer)
            self._started = True
            backoff = 0.0
            while not self._stop.is_set():
                try:
                    records = await self._kafka(self._poll)
                except KafkaError as exc:  # the client retries connections itself; this is a protocol-level error
                    log.warning("%s: poll failed: %s", self.handler.name, exc)
                    records = {}
                    backoff = self._next_backoff(backoff)
                else:
                    if not records:
                        continue
                    backoff = 0.0 if await self._process(records) else self._next_backoff(backoff)
                if backoff:
                    await self._sleep_unless_stopped(backoff)
        finally:
            if self._consumer is not None:  # leave the group now, so a successor gets the partitions at once
                await self._kafka(self._consumer.close, autocommit=False, timeout_ms=2_000)
            await self.handler.close()
            await self.publisher.close()
            await self.http.close()
            self._pool.shutdown(wait=False)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancellation racing its inner wait (gh-86296)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({stopped}, timeout=seconds)
        finally:
            stopped.cancel()

    def _next_backoff(self, current: float) -> float:
        first, most = (ms / 1e3 for ms in self.settings.retry_backoff_ms)
        return min(most, max(first, current * 2))

    def _poll(self) -> dict:
        """On the Kafka thread: one poll, then the lag of every assigned partition (local state, no request)."""
        c = self._consumer
        records = c.poll(timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.max_records)
        for tp in c.assignment():
            try:
                end, position = c.highwater(tp), c.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if end is not None and position is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(end - position, 0))
        return records

    async def _process(self, records: dict) -> bool:
        """One polled batch end to end; False if the sinks failed (the batch is rewound, nothing committed)."""
        started = time.perf_counter()
        batch: list[Delivery] = []
        letters: list[tuple[Delivery | object, str]] = []
        for recs in records.values():
            for r in recs:
                value = r.value or b""
                try:
                    event = parse_event(value, self.topics[r.topic])
                except BadEvent as exc:
                    letters.append((r, str(exc)))
                else:
                    batch.append(Delivery(r.topic, r.partition, r.offset, r.key, value, event))
        try:
            outcome = await self.handler.handle(batch) if batch else Outcome()
            letters.extend(outcome.rejected)
            if letters:  # acknowledged before the commit: a dead letter is never lost either
                await self._dead_letter(letters)
        except Exception:  # noqa: BLE001 -- any sink failure: replay the batch, never skip it
            log.exception("%s: batch of %d failed; polling it again", self.handler.name, len(batch))
            self.metrics.batch_failures.labels(self.handler.name).inc()
            await self._kafka(self._rewind, records)
            return False
        offsets = {tp: OffsetAndMetadata(recs[-1].offset + 1, "", -1) for tp, recs in records.items()}
        try:
            await self._kafka(self._consumer.commit, offsets)
        except KafkaError as exc:
            # e.g. a rebalance moved the partition: its new owner replays from the last commit; dedup absorbs it
            log.warning("%s: commit failed (%s); the batch will be redelivered", self.handler.name, exc)
        self.metrics.count("applied", outcome.applied)
        self.metrics.count("duplicate", outcome.duplicates)
        self.metrics.count("dead_lettered", len(letters))
        self.metrics.batch.labels(self.handler.name).observe(time.perf_counter() - started)
        return True

    def _rewind(self, records: dict) -> None:
        for tp, recs in records.items():
            if tp in self._consumer.assignment():
                self._consumer.seek(tp, recs[0].offset)

    async def _dead_letter(self, letters: Sequence[tuple[object, str]]) -> None:
        topic, now = self.stream.topics.name("dead_letter"), time.time()
        out = []
        for r, reason in letters:
            key = r.key.decode("utf-8", "replace") if r.key is not None else None
            out.append((topic, key, dead_letter(r.topic, r.partition, r.offset, r.key, r.value, reason,
                                                self.handler.name, now)))
            log.warning("%s: dead-lettered %s[%d]@%d: %s", self.handler.name, r.topic, r.partition, r.offset, reason)
        await self.publisher.publish_many(out)


def run_worker(consumer: StreamConsumer) -> None:
    """Run a consumer in this process until SIGTERM or SIGINT (then: finish the batch, commit, return). A sink or
    broker unreachable at start ends it with exit status 1 and the reason in the log."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.stop)
        await consumer.run()

    try:
        asyncio.run(main())
    except Exception as exc:  # noqa: BLE001 -- the process boundary: one line for operators, the trace in the log
        log.error("%s worker stopped: %s: %s", consumer.handler.name, type(exc).__name__, exc, exc_info=True)
        raise SystemExit(1) from None
