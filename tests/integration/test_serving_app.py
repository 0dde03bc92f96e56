"""The app against a real redis-server and broker: fresh, unseen, deduplicated answers; events go through the
stream (POST -> clicks topic -> feature worker -> Redis) and shape the next answer; broker down -> 503 with
Retry-After; Redis killed mid-test -> 200 from the trending list; every bad-input class gets its 4xx."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feature_store.materialize import materialize_world
from feature_store.redis_store import RedisFeatureStore
from newsrec.services import LocalServices, free_port
from serving.app import create_app
from serving.settings import ModelSettings, ServeSettings, StoreSettings
from streaming.feature_updater import FeatureUpdaterSettings, feature_updater_consumer
from streaming.settings import StreamSettings, Topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tiny_trained) -> tuple[Path, Path]:
    return tiny_trained


def _settings(world: Path, registry: Path, redis_url: str, prefix: str,
              stream: StreamSettings | None = None) -> ServeSettings:
    return ServeSettings(store=StoreSettings(redis_url=redis_url, prefix=prefix),
                         model=ModelSettings(registry=registry), catalogue_dir=world, world_end=True,
                         retrieval_k=200, stream=stream, follow_stream=False)  # item-vectors: test_stream_articles


def _stream(bootstrap: str, prefix: str) -> StreamSettings:
    return StreamSettings(bootstrap_servers=bootstrap, topics=Topics(prefix=f"{prefix}-"), produce_timeout_ms=2_000)


@pytest.fixture
def client(trained, services, unique_name):
    world, registry = trained
    materialize_world(world, services.redis_url, unique_name)
    settings = _settings(world, registry, services.redis_url, unique_name,
                         _stream(services.kafka_bootstrap, unique_name))
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def feature_worker(trained, services, unique_name):
    """The feature updater (`newsrec worker features`'s consumer) on its own thread and event loop; ready."""
    settings = FeatureUpdaterSettings(stream=_stream(services.kafka_bootstrap, unique_name),
                                      store={"redis_url": services.redis_url, "prefix": unique_name},
                                      consumer={"group_id": unique_name}, registry=trained[1])
    worker = feature_updater_consumer(settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(),), daemon=True)
    thread.start()
    _wait(lambda: worker.ready or not thread.is_alive(), 30, "the feature worker to join its group")
    assert thread.is_alive(), "the feature worker died at start"
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(worker.stop)
        thread.join(15)
        loop.close()


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def _live(client, news_ids, now) -> bool:
    snap = client.app.state.pipeline.index.snapshot
    where = {n: i for i, n in enumerate(snap.news_ids)}
    return all(snap.publish_s[where[n]] <= now < snap.expire_s[where[n]] for n in news_ids)


def _user(redis_url: str, prefix: str, user: str, now: float):
    """Read through a store of the test's own (the app's client lives on the app's event loop)."""
    async def read():
        store = RedisFeatureStore(redis_url, prefix)
        try:
            return await store.get_user(user, now)
        finally:
            await store.close()
    return asyncio.run(read())


def test_recommend_returns_k_fresh_unseen_unique_items(client):
    r = client.get("/v1/recommend", params={"user_id": "U5", "k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [i["news_id"] for i in body["items"]]
    assert body["source"] == "ranked" and len(ids) == 10 and len(set(ids)) == 10
    assert _live(client, ids, client.app.state.now())
    assert body["model_version"].startswith("v0001") and body["index_version"] >= 1
    assert "ranker;dur=" in r.headers["Server-Timing"]
    assert client.get("/readyz").status_code == 200 and client.get("/healthz").json() == {"status": "alive"}
    assert 'newsrec_recommend_source_total{source="ranked"}' in client.get("/metrics").text


def test_a_click_event_goes_through_the_stream_once_and_shapes_the_next_answer(client, feature_worker, services,
                                                                               unique_name):
    first = [i["news_id"] for i in client.get("/v1/recommend", params={"user_id": "U7"}).json()["items"]]
    clicked, now = first[0], client.app.state.now()
    before = _user(services.redis_url, unique_name, "U7", now).history_len
    event = {"type": "click", "event_id": "t-click-1", "user_id": "U7", "news_id": clicked}
    r = client.post("/v1/events", json={"events": [event]})
    assert r.status_code == 202 and r.json() == {"accepted": 1}  # acknowledged by the broker, not yet applied
    assert client.post("/v1/events", json={"events": [event]}).status_code == 202  # a client retry
    outcomes = feature_worker.metrics.registry.get_sample_value
    _wait(lambda: (outcomes("newsrec_stream_events_total", {"worker": "features", "outcome": "applied"}) or 0)
          + (outcomes("newsrec_stream_events_total", {"worker": "features", "outcome": "duplicate"}) or 0) >= 2,
          15, "the worker to see both copies")
    user = _user(services.redis_url, unique_name, "U7", now)
    assert user.history[0] == clicked and user.history_len == before + 1  # applied exactly once
    after = [i["news_id"] for i in client.get("/v1/recommend", params={"user_id": "U7"}).json()["items"]]
    assert clicked not in after


def test_events_get_a_503_with_retry_after_when_the_broker_is_down(trained, services, unique_name):
    world, registry = trained
    materialize_world(world, services.redis_url, unique_name)
    dead = StreamSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", produce_timeout_ms=1_000)
    ok = {"type": "click", "event_id": "e1", "user_id": "U1", "news_id": "N10001"}
    for stream in (dead, None):  # a broker that does not answer; no stream configured at all
        with TestClient(create_app(_settings(world, registry, services.redis_url, unique_name, stream))) as c:
            r = c.post("/v1/events", json={"events": [ok]})
            assert r.status_code == 503 and r.json()["error"] == "stream_unavailable", r.text
            assert r.headers["Retry-After"] == "1" and "Traceback" not in r.text
            assert c.post("/v1/events", json={"events": [ok | {"news_id": "N99999999"}]}).status_code == 422
            assert c.get("/v1/recommend", params={"user_id": "U1"}).status_code == 200  # reads are unaffected


@pytest.mark.parametrize("params,headers", [
    ({"user_id": "robert'); DROP"}, {}), ({"user_id": "U1", "k": 0}, {}), ({"user_id": "U1", "k": 101}, {}),
    ({}, {}), ({"user_id": "U1"}, {"X-Request-Budget-Ms": "0"}), ({"user_id": "U1"}, {"X-Request-Budget-Ms": "x"}),
])
def test_bad_recommend_input_is_a_422_with_a_reason(client, params, headers):
    r = client.get("/v1/recommend", params=params, headers=headers)
    assert r.status_code == 422 and r.json()["detail"] and "Traceback" not in r.text


def test_bad_events_get_their_4xx(client):
    ok = {"type": "click", "event_id": "e1", "user_id": "U1", "news_id": "N10001"}
    cases = [
        (b"{not json", 422), (json.dumps({"events": []}).encode(), 422),
        (json.dumps({"events": [ok | {"news_id": "N99999999"}]}).encode(), 422),   # unknown article
        (json.dumps({"events": [ok | {"user_id": "nobody"}]}).encode(), 422),
        (json.dumps({"events": [ok | {"time_s": -5}]}).encode(), 422),                # before 1970
        (json.dumps({"events": [ok | {"event_id": f"e{i}"} for i in range(101)]}).encode(), 413),
        (b"{" + b" " * 70_000 + b"}", 413),
    ]
    for body, status in cases:
        r = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, (body[:60], r.text)
        assert "Traceback" not in r.text


def test_redis_killed_mid_test_keeps_answering_from_trending(trained, tmp_path, unique_name):
    world, registry = trained
    local = LocalServices(tmp_path / "svc", die_with_parent=True)
    endpoints = local.start()
    try:
        materialize_world(world, endpoints.redis_url, unique_name)
        with TestClient(create_app(_settings(world, registry, endpoints.redis_url, unique_name))) as c:
            assert c.get("/v1/recommend", params={"user_id": "U5"}).json()["source"] == "ranked"
            local.kill("redis")
            for _ in range(5):
                r = c.get("/v1/recommend", params={"user_id": "U5", "k": 10})
                assert r.status_code == 200 and r.json()["source"] == "trending"
                assert r.json()["degraded"] == ["store_unavailable"] and len(r.json()["items"]) == 10
            assert 'newsrec_degraded_total{reason="store_unavailable"} 5.0' in c.get("/metrics").text
    finally:
        local.stop()
