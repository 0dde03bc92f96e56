"""The real app's edge: every answer carries an X-Request-Id (the client's when well formed); a 500's body, header
and log record share one id; a shed is a fast 503 with Retry-After, counted by reason and by status."""
from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

import serving.app
from serving.app import create_app
from serving.settings import AdmissionSettings, ModelSettings, ServeSettings, StoreSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def client(tiny_trained, services, unique_name):
    world, registry = tiny_trained
    settings = ServeSettings(store=StoreSettings(redis_url=services.redis_url, prefix=unique_name),
                             model=ModelSettings(registry=registry), catalogue_dir=world, world_end=True,
                             retrieval_k=200, admission=AdmissionSettings(max_in_flight=4, prefetch_max_in_flight=0))
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_answers_carry_the_request_id(client):
    r = client.get("/v1/recommend", params={"user_id": "U5"}, headers={"X-Request-Id": "rid-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "rid-42"
    bad = client.get("/v1/recommend", params={"user_id": "nobody"}, headers={"X-Request-Id": "no spaces allowed"})
    assert bad.status_code == 422 and len(bad.headers["x-request-id"]) == 32


def test_a_bug_answers_500_with_one_request_id_in_body_header_and_log(client, monkeypatch, caplog):
    async def bug(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(serving.app, "recommend", bug)
    with caplog.at_level(logging.ERROR, logger="newsrec.serving"):
        r = client.get("/v1/recommend", params={"user_id": "U5"}, headers={"X-Request-Id": "rid-500"})
    assert r.status_code == 500 and r.json() == {"error": "internal", "request_id": "rid-500"}
    assert r.headers["x-request-id"] == "rid-500" and "secret" not in r.text
    assert [rec.request_id for rec in caplog.records if rec.exc_info] == ["rid-500"]
    metrics = client.get("/metrics").text
    assert 'newsrec_http_responses_total{path="/v1/recommend",status="500"} 1.0' in metrics


def test_a_prefetch_over_its_bound_is_shed_with_retry_after_and_counted(client):
    r = client.get("/v1/recommend", params={"user_id": "U5"}, headers={"X-Prefetch": "1"})
    assert r.status_code == 503 and r.json()["error"] == "overloaded"
    assert r.headers["retry-after"] == "1" and len(r.headers["x-request-id"]) == 32
    assert client.get("/v1/recommend", params={"user_id": "U5"}).status_code == 200  # normal requests admitted
    metrics = client.get("/metrics").text
    assert 'newsrec_shed_total{reason="prefetch"} 1.0' in metrics
    assert 'newsrec_http_responses_total{path="/v1/recommend",status="503"} 1.0' in metrics
    assert 'newsrec_http_responses_total{path="/v1/recommend",status="200"} 1.0' in metrics
    assert "newsrec_in_flight_requests 0.0" in metrics
