"""RedisFeatureStore beyond the conformance suite: key TTLs, one round trip per read, the NOSCRIPT fallback, no
retries on timeouts, errors surfacing, and get_user latency on the local redis-server."""
from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator

import pytest
import redis
from redis.asyncio.connection import Connection

from feature_store import keys
from feature_store.base import ClickUpdate, ItemFeatures
from feature_store.redis_store import RedisFeatureStore
from newsrec.services import ServiceEndpoints

pytestmark = pytest.mark.integration
T0 = 1_780_000_000.0
PRIOR = (0.3, 0.2, 0.1)


@pytest.fixture
def make_store(services: ServiceEndpoints, unique_name: str, redis_client: redis.Redis):
    return lambda **kw: RedisFeatureStore(services.redis_url, unique_name, **kw)


@pytest.fixture
def sent_packets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts Connection.send_packed_command calls: each is one write of one or more commands to the socket."""
    calls: list[int] = []
    original = Connection.send_packed_command

    async def counting(self, command, check_health=True):
        calls.append(1)
        return await original(self, command, check_health)
    monkeypatch.setattr(Connection, "send_packed_command", counting)
    yield calls


async def _populate(store: RedisFeatureStore) -> None:
    await store.seed_history("U1", ["N8", "N9"], 2)
    await store.apply_click("c1", "U1", "N1", "soccer", "sports", T0)
    await store.apply_impression("i1", "U1", [("N1", "soccer", "sports", 0), ("N2", "tennis", "sports", 1)], T0, PRIOR)
    await store.put_items([ItemFeatures("N1", "sports", "soccer", "t", T0, T0 + 3600)])


def test_every_key_gets_its_ttl(make_store, redis_client: redis.Redis, unique_name: str) -> None:
    async def main() -> None:
        store = make_store(user_ttl_s=1000, item_ttl_s=500, dedup_ttl_s=200)
        await _populate(store)
        await store.close()
    asyncio.run(main())
    p = unique_name
    expected = {keys.history_key(p, "U1"): 1000, keys.profile_key(p, "U1"): 1000, keys.user_topic_key(p, "U1"): 1000,
                keys.item_counter_key(p, "N1"): 500, keys.item_counter_key(p, "N2"): 500,
                keys.item_features_key(p, "N1"): 500, keys.dedup_key(p, "c1"): 200, keys.dedup_key(p, "i1"): 200,
                keys.dedup_key(p, "seed-U1"): 200}
    assert {k.decode() for k in redis_client.scan_iter(match=f"{p}*")} == set(expected)
    for key, ttl in expected.items():
        assert ttl - 5 <= redis_client.ttl(key) <= ttl, key


def test_reads_are_one_round_trip(make_store, sent_packets: list[int]) -> None:
    async def main() -> None:
        store = make_store()
        await store.start()  # connects and caches the scripts
        await _populate(store)
        sent_packets.clear()  # count only the reads
        user = await store.get_user("U1", T0)
        assert user.history == ("N1", "N8", "N9") and len(sent_packets) == 1
        counters = await store.get_item_counters([f"N{i}" for i in range(500)], T0)
        assert counters.shows_6h[:3].tolist() == [0.0, 1.0, 1.0] and len(sent_packets) == 2
        assert (await store.get_item_features(["N1", "N2"]))[1] is None and len(sent_packets) == 3
        await store.close()
    asyncio.run(main())


def test_a_batch_of_updates_is_one_round_trip(make_store, sent_packets: list[int]) -> None:
    async def main() -> None:
        store = make_store()
        await store.get_user("U0", T0)
        sent_packets.clear()
        for i in range(200):
            await store.apply_click(f"warm{i}", "U0", "N0", "soccer", "sports", T0)  # EVALSHA cached after the first
        sent_packets.clear()
        batch = [ClickUpdate(f"c{i}", f"U{i % 7}", f"N{i % 5}", "soccer", "sports", T0 + i) for i in range(300)]
        assert all(await store.apply_updates(batch))
        assert len(sent_packets) == 1
        await store.close()
    asyncio.run(main())


def test_a_flushed_script_cache_falls_back_to_eval(make_store, redis_client: redis.Redis,
                                                   sent_packets: list[int]) -> None:
    async def main() -> None:
        store = make_store()
        assert await store.apply_click("c1", "U1", "N1", "soccer", "sports", T0)
        redis_client.script_flush()  # as after a Redis restart or failover
        assert await store.apply_click("c2", "U1", "N2", "soccer", "sports", T0 + 1)
        assert not await store.apply_click("c2", "U1", "N2", "soccer", "sports", T0 + 1)
        assert (await store.get_user("U1", T0 + 1)).history == ("N2", "N1")
        sent_packets.clear()
        counters = await store.get_item_counters(["N1", "N2"], T0 + 1)
        assert counters.clicks[24.0].tolist() == [pytest.approx(2 ** (-1 / 86400)), 1.0]
        assert len(sent_packets) == 2  # EVALSHA_RO answered NOSCRIPT, EVAL_RO ran it and cached it
        await store.get_item_counters(["N1", "N2"], T0 + 1)
        assert len(sent_packets) == 3
        await store.close()
    asyncio.run(main())


def test_a_failing_script_raises(make_store, redis_client: redis.Redis, unique_name: str) -> None:
    redis_client.set(keys.history_key(unique_name, "U1"), "not a list")

    async def main() -> None:
        store = make_store()
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
            await store.apply_click("c1", "U1", "N1", "soccer", "sports", T0)
        await store.close()
    asyncio.run(main())


def test_a_silent_server_times_out_once_without_retries() -> None:
    """Against a server that accepts and never answers: the read fails after socket_timeout_ms, on one connection."""
    accepted: list[asyncio.StreamWriter] = []

    async def main() -> float:
        async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)
            await reader.read(1 << 16)
        server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        store = RedisFeatureStore(f"redis://127.0.0.1:{port}/0", "p", socket_timeout_ms=100, connect_timeout_ms=100)
        assert store.redis.get_retry().get_retries() == 0
        started = time.perf_counter()
        try:
            with pytest.raises(redis.exceptions.TimeoutError):
                await store.get_user("U1", T0)
            return time.perf_counter() - started
        finally:
            await store.close()
            for writer in accepted:
                writer.close()
            server.close()
            await server.wait_closed()
    elapsed = asyncio.run(main())
    assert len(accepted) == 1  # no reconnect-and-retry
    assert elapsed < 0.5


def test_get_user_latency_on_local_redis(make_store) -> None:
    async def main() -> list[float]:
        store = make_store()
        await _populate(store)
        topics = [(f"sub{i}", f"cat{i % 6}") for i in range(40)]
        for i in range(50):  # a heavy reader: full history, 40 subcategories x 6 categories
            sub, cat = topics[i % len(topics)]
            await store.apply_click(f"h{i}", "U1", f"N{i}", sub, cat, T0 + i)
        await store.get_user("U1", T0)
        times = []
        for _ in range(200):
            started = time.perf_counter()
            await store.get_user("U1", T0 + 100)
            times.append(time.perf_counter() - started)
        await store.close()
        return times
    times = asyncio.run(main())
    median_ms = statistics.median(times) * 1000
    print(f"get_user median {median_ms:.3f} ms, p99 {sorted(times)[197] * 1000:.3f} ms over 200 calls")
    assert median_ms < 10.0  # a loose bound: the request budget is 100 ms p99 for the whole pipeline
