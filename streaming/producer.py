"""EventPublisher: asyncio-friendly publishing of stream events over kafka-python's thread-safe KafkaProducer.
`await publish(...)` resolves once the broker acknowledged every record (acks=all); used by POST /v1/events and by
the workers (dead letters, derived topics)."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streaming.events import _Event as Event
from streaming.settings import StreamSettings
from streaming.topics import ensure_topics

log = logging.getLogger("newsrec.streaming.producer")
Record = tuple[str, "str | None", Event]  # (topic, key, event)


class PublishError(Exception):
    """The broker did not acknowledge every record in time; some may still land (ids make a retry safe)."""


class BrokerUnavailable(PublishError):
    """No connection to the broker, or no acknowledgement within produce_timeout_ms."""


class _AllAcked:
    """Counts kafka-python futures down on the producer's I/O thread; wakes the event loop once, not per record."""

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int):
        self.loop, self.remaining, self.lock = loop, n, threading.Lock()
        self.done: asyncio.Future = loop.create_future()

    def ok(self, _metadata: object) -> None:
        with self.lock:
            self.remaining -= 1
            last = self.remaining == 0
        if last:
            self.loop.call_soon_threadsafe(self._settle, None)

    def failed(self, exc: BaseException) -> None:
        self.loop.call_soon_threadsafe(self._settle, exc)

    def _settle(self, exc: BaseException | None) -> None:
        if self.done.done():  # already failed, or the awaiting side timed out and cancelled it
            return
        if exc is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)


class EventPublisher:
    """One KafkaProducer per process, connected on first use (a process that never publishes never connects).

    Producer settings, measured on Tansu 0.6: acks="all" is honoured. Idempotence is off: after a broker restart
    Tansu answers InitProducerId with UnknownError forever and an idempotent producer never recovers, while a plain
    one reconnects at once. Without idempotence a retry may write a record twice; every consumer deduplicates by
    event id, and max_in_flight=1 keeps a retried batch from overtaking the next one (a reader's clicks stay in
    order on their partition).
    """

    def __init__(self, settings: StreamSettings, client_id: str = "newsrec", reconnect_backoff_s: float = 1.0):
        self.settings, self.client_id, self.reconnect_backoff_s = settings, client_id, reconnect_backoff_s
        self._producer: KafkaProducer | None = None
        self._connecting = asyncio.Lock()
        self._last_failure: tuple[float, str] | None = None  # (monotonic time, reason) of the last failed connect
        # A broker that dies under a connected producer: after one publish timed out, the next ones fail at once
        # for reconnect_backoff_s (a request must not hold its slot for produce_timeout_ms each), then one probe
        # goes through; its success closes the breaker.
        self._open_until, self._open_reason, self._probing = 0.0, "", False

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def _connect_blocking(self) -> KafkaProducer:
        s = self.settings
        timeout_ms = s.produce_timeout_ms
        producer = KafkaProducer(
            bootstrap_servers=s.bootstrap_servers, client_id=self.client_id, acks="all", enable_idempotence=False,
            max_in_flight_requests_per_connection=1, linger_ms=s.linger_ms, retries=2**31 - 1,
            request_timeout_ms=timeout_ms, delivery_timeout_ms=timeout_ms + s.linger_ms,
            max_block_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms)
        try:
            ensure_topics(s)  # sending to a missing topic would block for metadata, then fail
        except BaseException:
            producer.close(timeout=0)
            raise
        return producer

    async def start(self) -> None:
        """Connect now (a worker wants to fail at start, not at its first dead letter); raises BrokerUnavailable."""
        await self._ready_producer()

    async def _ready_producer(self) -> KafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._connecting:
            if self._producer is not None:
                return self._producer
            # While the broker is down, fail fast instead of making every request wait out a connect timeout.
            if self._last_failure and time.monotonic() - self._last_failure[0] < self.reconnect_backoff_s:
                raise BrokerUnavailable(self._last_failure[1])
            try:
                self._producer = await asyncio.to_thread(self._connect_blocking)
            except Exception as exc:  # kafka-python raises KafkaError subclasses, the admin client also OSError
                reason = f"cannot reach the broker at {self.settings.bootstrap_servers} ({type(exc).__name__})"
                self._last_failure = (time.monotonic(), reason)
                log.warning("%s: %s", reason, exc)
                raise BrokerUnavailable(reason) from None
            self._last_failure = None
            return self._producer

    async def publish(self, topic: str, key: str | None, events: Sequence[Event]) -> None:
        """Publish events to one topic under one key; returns once every one is acknowledged."""
        await self.publish_many([(topic, key, e) for e in events])

    async def publish_many(self, records: Sequence[Record]) -> None:
        """Publish (topic, key, event) records in order; returns once the broker acknowledged all of them.

        Raises BrokerUnavailable when not connected or when an ack is missing after produce_timeout_ms."""
        if not records:
            return
        producer = await self._ready_producer()
        probe = self._admit()
        loop = asyncio.get_running_loop()
        acked = _AllAcked(loop, len(records))
        payload = [(t, None if k is None else k.encode(), e.to_bytes()) for t, k, e in records]

        def send_all() -> None:
            # In a thread: send() blocks up to max_block_ms when the broker's metadata is unavailable.
            for topic, key, value in payload:
                producer.send(topic, key=key, value=value).add_callback(acked.ok).add_errback(acked.failed)

        timeout_s = self.settings.produce_timeout_ms / 1e3
        deadline = loop.time() + timeout_s
        try:
            await asyncio.wait_for(asyncio.to_thread(send_all), timeout_s)
            await asyncio.wait_for(acked.done, max(deadline - loop.time(), 0.0))
        except (TimeoutError, KafkaError) as exc:
            what = "no ack" if isinstance(exc, TimeoutError) else type(exc).__name__
            reason = (f"the broker at {self.settings.bootstrap_servers} did not acknowledge {len(records)} "
                      f"record(s) within {timeout_s:g} s ({what})")
            self._open_until, self._open_reason = time.monotonic() + self.reconnect_backoff_s, reason
            raise BrokerUnavailable(reason) from None
        else:
            self._open_until = 0.0
        finally:
            if probe:
                self._probing = False

    def _admit(self) -> bool:
        """Raise at once while the breaker is open; True when this publish is the one probe of a half-open one."""
        if not self._open_until:
            return False
        if time.monotonic() < self._open_until or self._probing:
            raise BrokerUnavailable(f"{self._open_reason}; failing fast until the broker answers again")
        self._probing = True
        return True

    async def close(self, timeout_s: float = 2.0) -> None:
        """Flush what is pending (bounded) and disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(producer.close, timeout_s)
