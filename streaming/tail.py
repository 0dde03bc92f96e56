"""A group-less reader of whole topics: every partition assigned, read from given offsets (or the start / the end).

Serving replicas tail `item-vectors` and `model-updates` with it (each replica must see every record, so no
consumer group shares the partitions out), and so does the ingestor's snapshot writer. kafka-python's consumer is
not thread-safe: every call runs on the tail's one thread, so even a close after a cancelled poll waits its turn.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Literal

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

Start = Literal["beginning", "end"] | Mapping[int, int]   # or partition -> next offset to read


class TailUnavailable(Exception):
    """The broker or a topic cannot be reached yet; retry later."""


class TopicMissing(TailUnavailable):
    """The broker answers but a topic does not exist (Tansu never auto-creates): create it, then retry."""


@dataclass(frozen=True)
class TailRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _connect(bootstrap_servers: str, starts: Mapping[str, Start], client_id: str, fetch_max_wait_ms: int,
             metadata_timeout_s: float, bootstrap_timeout_ms: int) -> tuple[KafkaConsumer, dict]:
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                                 auto_offset_reset="earliest", client_id=client_id,
                                 fetch_max_wait_ms=fetch_max_wait_ms, bootstrap_timeout_ms=bootstrap_timeout_ms,
                                 reconnect_backoff_max_ms=2_000)
    except KafkaError as exc:
        raise TailUnavailable(f"broker {bootstrap_servers}: {type(exc).__name__}") from None
    try:
        partitions: dict[str, list[TopicPartition]] = {}
        for topic in starts:
            deadline = time.monotonic() + metadata_timeout_s
            while not (parts := consumer.partitions_for_topic(topic)):
                if time.monotonic() > deadline:
                    raise TopicMissing(f"topic {topic!r} has no partitions (not created yet)")
                time.sleep(0.1)
            partitions[topic] = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign([tp for tps in partitions.values() for tp in tps])
        for topic, start in starts.items():
            tps = partitions[topic]
            if start == "end":
                consumer.seek_to_end(*tps)
            elif start == "beginning":
                consumer.seek_to_beginning(*tps)
            else:
                for tp in tps:
                    if tp.partition in start:
                        consumer.seek(tp, int(start[tp.partition]))
                    else:
                        consumer.seek_to_beginning(tp)
    except BaseException:
        consumer.close()
        raise
    return consumer, partitions


class TopicTail:
    """Open with `await TopicTail.open(...)`; then poll / end_offsets / positions / close (all async)."""

    def __init__(self, consumer: KafkaConsumer, partitions: dict[str, list[TopicPartition]],
                 pool: ThreadPoolExecutor):
        self._c, self.partitions, self._pool = consumer, partitions, pool

    @classmethod
    async def open(cls, bootstrap_servers: str, starts: Mapping[str, Start], client_id: str = "newsrec-tail",
                   fetch_max_wait_ms: int = 50, metadata_timeout_s: float = 1.0, bootstrap_timeout_ms: int = 3_000
                   ) -> TopicTail:
        """Assign every partition of each topic in `starts` and position it. A partition missing from an offsets
        mapping starts at the beginning; an offset the broker no longer holds (retention) resets to the earliest.
        fetch_max_wait_ms bounds the latency the tail adds: measured on Tansu 0.6, a fetch waits that long even
        when records arrive meanwhile. An idle serving replica's tail costs ~3% of a core at 50 ms (6% at 20 ms,
        2% at 100 ms; measured here)."""
        pool = ThreadPoolExecutor(1, thread_name_prefix=client_id)
        try:
            consumer, partitions = await asyncio.get_running_loop().run_in_executor(pool, partial(
                _connect, bootstrap_servers, starts, client_id, fetch_max_wait_ms, metadata_timeout_s,
                bootstrap_timeout_ms))
        except BaseException:
            pool.shutdown(wait=False)
            raise
        return cls(consumer, partitions, pool)

    async def _run(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args, **kwargs))

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """partition -> the offset the next record will get (the high watermark) now."""
        try:
            ends = await self._run(self._c.end_offsets, self.partitions[topic])
        except KafkaError as exc:
            raise TailUnavailable(f"end offsets of {topic!r}: {type(exc).__name__}") from None
        return {tp.partition: off for tp, off in ends.items()}

    async def positions(self, topic: str) -> dict[int, int]:
        """partition -> the next offset this tail will read."""
        return await self._run(lambda: {tp.partition: self._c.position(tp) for tp in self.partitions[topic]})

    async def poll(self, timeout_ms: int = 200, max_records: int = 2_000) -> list[TailRecord]:
        """Records in partition order (each partition's in offset order); [] after timeout_ms without any."""
        got = await self._run(self._c.poll, timeout_ms=timeout_ms, max_records=max_records)
        return [TailRecord(tp.topic, tp.partition, r.offset, r.key, r.value)
                for tp, recs in got.items() for r in recs]

    async def close(self) -> None:
        """Close after any call still running on the tail's thread (e.g. a poll whose awaiter was cancelled)."""
        try:
            await asyncio.shield(self._run(self._c.close))
        finally:
            self._pool.shutdown(wait=False)
