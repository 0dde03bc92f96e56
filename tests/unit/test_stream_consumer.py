"""The consumer loop's batch contract with in-memory doubles (the real broker is in tests/integration): offsets are
committed only after the handler's writes and the dead letters landed; a failed batch is rewound, not committed."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from kafka import TopicPartition

from streaming.consumer import ConsumerSettings, Outcome, StreamConsumer
from streaming.events import ClickEvent, ImpressionEvent, parse_event
from streaming.producer import BrokerUnavailable
from streaming.settings import StreamSettings, Topics


@dataclass(frozen=True)
class Record:  # the fields of kafka-python's ConsumerRecord the loop reads
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class FakeKafka:
    def __init__(self, log: list):
        self.log, self.committed, self.seeks = log, {}, {}

    def assignment(self):
        return {TopicPartition("clicks", 0), TopicPartition("clicks", 1)}

    def commit(self, offsets):
        self.log.append("commit")
        self.committed.update({tp: o.offset for tp, o in offsets.items()})

    def seek(self, tp, offset):
        self.seeks[tp] = offset


class FakePublisher:
    def __init__(self, log: list, fail: bool = False):
        self.log, self.fail, self.records = log, fail, []

    async def publish_many(self, records):
        if self.fail:
            raise BrokerUnavailable("down")
        self.log.append("dead letters")
        self.records.extend(records)


class RecordingHandler:
    name = "test"
    event_types = (ClickEvent, ImpressionEvent)  # the topic map below narrows "clicks" to clicks

    def __init__(self, log: list, fail: bool = False):
        self.log, self.fail, self.batches = log, fail, []

    async def handle(self, batch):
        self.batches.append(batch)
        if self.fail:
            raise ConnectionError("redis down")
        self.log.append("writes")
        return Outcome(applied=len(batch))


def _click(i: int) -> bytes:
    return json.dumps({"v": 1, "type": "click", "event_id": f"c{i}", "time_s": 1.0, "user_id": "U1",
                       "news_id": "N1"}).encode()


def _records() -> dict:
    p0, p1 = TopicPartition("clicks", 0), TopicPartition("clicks", 1)
    imp = ImpressionEvent(event_id="i1", time_s=1.0, user_id="U1", news_ids=["N1"]).to_bytes()
    return {p0: [Record("clicks", 0, 10, b"U1", _click(1)), Record("clicks", 0, 11, b"U1", b"{oops")],
            p1: [Record("clicks", 1, 5, b"U2", _click(2)), Record("clicks", 1, 6, b"U2", imp),
                 Record("clicks", 1, 7, b"U2", _click(3))]}


def _consumer(handler, publisher, log) -> StreamConsumer:
    c = StreamConsumer(StreamSettings(topics=Topics(prefix="t-")), ConsumerSettings(), {"clicks": (ClickEvent,)}, handler,
                       publisher=publisher)
    c._consumer = FakeKafka(log)
    return c


def test_offsets_are_committed_after_the_writes_and_the_dead_letters():
    log: list = []
    handler, publisher = RecordingHandler(log), FakePublisher(log)
    c = _consumer(handler, publisher, log)
    assert asyncio.run(c._process(_records())) is True
    assert log == ["writes", "dead letters", "commit"]
    assert [d.event.event_id for d in handler.batches[0]] == ["c1", "c2", "c3"]  # partition order kept
    assert c._consumer.committed == {TopicPartition("clicks", 0): 12, TopicPartition("clicks", 1): 8}
    letters = {(t, k): parse_event(e.to_bytes()) for t, k, e in publisher.records}
    assert set(letters) == {("t-dead-letter", "U1"), ("t-dead-letter", "U2")}
    bad_json, wrong_type = letters["t-dead-letter", "U1"], letters["t-dead-letter", "U2"]
    assert (bad_json.offset, bad_json.value, bad_json.worker) == (11, "{oops", "test")
    assert "Invalid JSON" in bad_json.reason
    assert wrong_type.offset == 6 and wrong_type.reason == "unexpected event type 'impression' on this topic"
    text = c.metrics.registry.get_sample_value
    assert text("newsrec_stream_events_total", {"worker": "test", "outcome": "applied"}) == 3
    assert text("newsrec_stream_events_total", {"worker": "test", "outcome": "dead_lettered"}) == 2


def test_a_failed_sink_rewinds_the_batch_and_commits_nothing():
    log: list = []
    c = _consumer(RecordingHandler(log, fail=True), FakePublisher(log), log)
    assert asyncio.run(c._process(_records())) is False
    assert "commit" not in log and c._consumer.committed == {}
    assert c._consumer.seeks == {TopicPartition("clicks", 0): 10, TopicPartition("clicks", 1): 5}
    assert c.metrics.registry.get_sample_value("newsrec_stream_batch_failures_total", {"worker": "test"}) == 1


def test_an_unacknowledged_dead_letter_blocks_the_commit_too():
    log: list = []
    c = _consumer(RecordingHandler(log), FakePublisher(log, fail=True), log)
    assert asyncio.run(c._process(_records())) is False
    assert log == ["writes"] and c._consumer.committed == {}  # the writes are idempotent: replaying is safe
