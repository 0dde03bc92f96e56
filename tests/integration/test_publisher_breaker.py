"""A broker that dies under a connected publisher: the first publish waits out its timeout, the next ones fail at
once (no request holds its slot for the whole produce timeout), and publishing resumes when the broker is back."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from newsrec.services import LocalServices
from streaming.events import ClickEvent
from streaming.producer import BrokerUnavailable, EventPublisher
from streaming.settings import StreamSettings, Topics
from streaming.topics import ensure_topics

pytestmark = pytest.mark.integration


def _click(i: int) -> ClickEvent:
    return ClickEvent(event_id=f"breaker-{i}", time_s=1_700_000_000 + i, user_id="U1", news_id="N1")


async def _timed_publish(publisher: EventPublisher, topic: str, i: int) -> tuple[float, Exception | None]:
    started = time.perf_counter()
    try:
        await publisher.publish(topic, "U1", [_click(i)])
        return time.perf_counter() - started, None
    except BrokerUnavailable as exc:
        return time.perf_counter() - started, exc


def test_a_dead_broker_fails_fast_after_the_first_timeout_and_publishing_resumes(tmp_path, unique_name):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    local = LocalServices(tmp_path, env=env, die_with_parent=True)
    endpoints = local.start()
    try:
        settings = StreamSettings(bootstrap_servers=endpoints.kafka_bootstrap, produce_timeout_ms=1_000,
                                  topics=Topics(prefix=f"{unique_name}-"), partitions=1)
        topic = settings.topics.name("clicks")

        async def scenario():
            publisher = EventPublisher(settings, "breaker-test", reconnect_backoff_s=1.0)
            try:
                healthy = await _timed_publish(publisher, topic, 0)
                local.kill("kafka")
                first = await _timed_publish(publisher, topic, 1)   # waits out produce_timeout_ms
                fast = [await _timed_publish(publisher, topic, 2 + i) for i in range(5)]  # the breaker is open
                local.restart("kafka")
                ensure_topics(settings)  # an in-memory broker comes back empty
                await asyncio.sleep(1.1)  # past the backoff: the next publish is the probe
                deadline, resumed = time.monotonic() + 20, None
                while time.monotonic() < deadline:
                    resumed = await _timed_publish(publisher, topic, 100)
                    if resumed[1] is None:
                        break
                    await asyncio.sleep(0.5)
                after = await _timed_publish(publisher, topic, 101)
                return healthy, first, fast, resumed, after
            finally:
                await publisher.close(timeout_s=1)

        healthy, first, fast, resumed, after = asyncio.run(scenario())
    finally:
        local.stop()
    assert healthy[1] is None
    assert isinstance(first[1], BrokerUnavailable) and first[0] >= 0.9
    assert all(isinstance(exc, BrokerUnavailable) and "failing fast" in str(exc) for _, exc in fast)
    assert max(seconds for seconds, _ in fast) < 0.05
    assert resumed is not None and resumed[1] is None, resumed
    assert after[1] is None and after[0] < 1.0
