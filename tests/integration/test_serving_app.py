"""The app against a real redis-server: fresh, unseen, deduplicated answers; events shape the next answer;
Redis killed mid-test -> 200 from the trending list; every bad-input class gets its 4xx without internals."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feature_store.materialize import materialize_world
from feature_store.redis_store import RedisFeatureStore
from newsrec.services import LocalServices
from serving.app import create_app
from serving.settings import ModelSettings, ServeSettings, StoreSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tiny_trained) -> tuple[Path, Path]:
    return tiny_trained


def _settings(world: Path, registry: Path, redis_url: str, prefix: str) -> ServeSettings:
    return ServeSettings(store=StoreSettings(redis_url=redis_url, prefix=prefix),
                         model=ModelSettings(registry=registry), catalogue_dir=world, world_end=True,
                         retrieval_k=200)


@pytest.fixture
def client(trained, services, unique_name):
    world, registry = trained
    materialize_world(world, services.redis_url, unique_name)
    with TestClient(create_app(_settings(world, registry, services.redis_url, unique_name))) as c:
        yield c


def _live(client, news_ids, now) -> bool:
    snap = client.app.state.pipeline.index.snapshot
    where = {n: i for i, n in enumerate(snap.news_ids)}
    return all(snap.publish_s[where[n]] <= now < snap.expire_s[where[n]] for n in news_ids)


def _history(redis_url: str, prefix: str, user: str, now: float) -> tuple[str, ...]:
    """Read through a store of the test's own (the app's client lives on the app's event loop)."""
    async def read():
        store = RedisFeatureStore(redis_url, prefix)
        try:
            return (await store.get_user(user, now)).history
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


def test_a_click_event_updates_history_and_the_next_answer(client, services, unique_name):
    first = [i["news_id"] for i in client.get("/v1/recommend", params={"user_id": "U7"}).json()["items"]]
    clicked = first[0]
    event = {"type": "click", "event_id": "t-click-1", "user_id": "U7", "news_id": clicked}
    r = client.post("/v1/events", json={"events": [event]})
    assert r.status_code == 202 and r.json() == {"accepted": 1, "duplicates": 0}
    assert client.post("/v1/events", json={"events": [event]}).json()["duplicates"] == 1  # exactly once
    assert _history(services.redis_url, unique_name, "U7", client.app.state.now())[0] == clicked
    after = [i["news_id"] for i in client.get("/v1/recommend", params={"user_id": "U7"}).json()["items"]]
    assert clicked not in after


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
