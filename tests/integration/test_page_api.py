"""The page's read-only endpoints against a real redis-server: the page and its assets, article metadata (titles
from Redis, ages by the service's clock, catalogue fallback), trending, sample readers, recent reads, topics;
bad input -> 422 with a reason; Redis unreachable -> answers that say so, never a 5xx."""
from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
import redis
from fastapi.testclient import TestClient

from feature_store.materialize import materialize_world, read_titles
from feature_store.redis_store import RedisFeatureStore
from newsrec.services import free_port
from serving.app import create_app
from serving.settings import ModelSettings, ServeSettings, StoreSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world_titles(tiny_trained) -> dict[str, str]:
    return read_titles(tiny_trained[0])


def _client(tiny_trained, redis_url: str, prefix: str) -> TestClient:
    world, registry = tiny_trained
    settings = ServeSettings(store=StoreSettings(redis_url=redis_url, prefix=prefix),
                             model=ModelSettings(registry=registry), catalogue_dir=world, world_end=True)
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def prefix(tiny_trained, services):
    """The tiny world (500 impressions) materialized once for the module; its keys deleted after."""
    name = f"page-api-{uuid.uuid4().hex[:8]}"
    materialize_world(tiny_trained[0], services.redis_url, name, limit_impressions=500)
    yield name
    client = redis.Redis.from_url(services.redis_url)
    client.unlink(*client.scan_iter(match=f"{name}:*", count=1000))  # a few thousand keys: one call
    client.close()


@pytest.fixture(scope="module")
def client(tiny_trained, services, prefix):
    with _client(tiny_trained, services.redis_url, prefix) as c:
        yield c


def _cut_redis(client: TestClient) -> None:
    """Point the running app's store at a port nobody listens on: every store call now fails to connect."""
    p = client.app.state.pipeline
    client.app.state.pipeline = replace(p, store=RedisFeatureStore(f"redis://127.0.0.1:{free_port()}/0", "x"))


def test_the_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text and 'for="reader-select"' in page.text
    assert "http" not in page.text.split("<body>")[0].replace('href="data:,"', "")  # no external fonts or CDNs
    js, css = client.get("/static/app.js"), client.get("/static/app.css")
    assert js.status_code == css.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    for bad in ("missing.js", "..%2Fpage.py", "page.py", "APP.JS"):
        assert client.get(f"/static/{bad}").status_code == 404


def test_articles_have_titles_from_redis_and_ages_by_the_service_clock(client, world_titles):
    ids = list(world_titles)[:3]
    body = client.get("/v1/articles", params={"ids": ",".join([*ids, "N999999999", ids[0]])}).json()
    assert [a["news_id"] for a in body["articles"]] == ids and body["missing"] == ["N999999999"]
    assert [a["title"] for a in body["articles"]] == [world_titles[i] for i in ids] and body["degraded"] == []
    now = client.app.state.now()
    for a in body["articles"]:
        assert a["category"] and a["subcategory"] and abs(a["age_s"] - (now - a["publish_s"])) < 5


def test_articles_fall_back_to_the_catalogue_when_redis_is_unreachable(tiny_trained, services, prefix, world_titles):
    client = _client(tiny_trained, services.redis_url, prefix)  # its own app: this test breaks its store
    with client:
        _fall_back(client, list(world_titles)[:2])


def _fall_back(client: TestClient, ids: list[str]) -> None:
    before = client.get("/v1/articles", params={"ids": ",".join(ids)}).json()["articles"]
    _cut_redis(client)
    r = client.get("/v1/articles", params={"ids": ",".join(ids)})
    assert r.status_code == 200 and r.json()["degraded"] == ["store_unavailable"]
    after = r.json()["articles"]
    strip = lambda rows: [{k: v for k, v in a.items() if k != "age_s"} for a in rows]  # noqa: E731
    assert strip(after) == strip(before)
    assert client.get("/v1/readers").json() == {"readers": [], "degraded": ["store_unavailable"]}
    history = client.get("/v1/users/U5/history").json()
    assert history["history"] == [] and history["degraded"] == ["store_unavailable"]


@pytest.mark.parametrize("ids, reason", [
    ("", "at least one"), (",,", "at least one"), ("N1,bad", "'bad' is not a news id"),
    ("U5", "'U5' is not a news id"), (",".join(f"N{i}" for i in range(101)), "at most 100"),
])
def test_bad_article_ids_are_a_422_with_a_reason(client, ids, reason):
    r = client.get("/v1/articles", params={"ids": ids})
    assert r.status_code == 422 and reason in str(r.json()["detail"]), r.text


def test_trending_readers_history_and_topics(client, services, unique_name):
    trending = client.get("/v1/trending", params={"k": 5}).json()["items"]
    assert len(trending) == 5 and len({t["news_id"] for t in trending}) == 5
    assert all(t["clicks_6h"] >= 0 and t["category"] for t in trending)
    readers = client.get("/v1/readers", params={"n": 7}).json()["readers"]
    assert len(readers) == 7 and readers == sorted(readers, key=lambda u: int(u[1:]))
    history = client.get(f"/v1/users/{readers[0]}/history", params={"n": 3}).json()
    assert 1 <= len(history["history"]) <= 3 and history["history_len"] >= len(history["history"])
    topics = client.get("/v1/topics").json()["topics"]
    table = client.app.state.pipeline.items.snapshot
    assert {(t["category"], s) for t in topics for s in t["subcategories"]} == set(zip(table.category, table.subcategory))
    for path, params in [("/v1/trending", {"k": 0}), ("/v1/trending", {"k": 51}), ("/v1/readers", {"n": 0}),
                         ("/v1/users/X5/history", {}), ("/v1/users/U5/history", {"n": 99})]:
        assert client.get(path, params=params).status_code == 422, path
