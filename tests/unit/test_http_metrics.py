"""Responses counted by path and status: answers, unknown paths as "other", a bug as 500, nothing for a request
whose client left before any answer."""
from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Counter

from serving.http_metrics import ResponseCounter


def app_answering(status: int | None, error: type[BaseException] | None = None):
    async def app(scope, receive, send):
        if status is not None:
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        if error is not None:
            raise error()
    return app


def count(inner, path: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    mw = ResponseCounter(inner, Counter("responses_total", "r", ["path", "status"], registry=registry))

    async def send(message):
        pass

    try:
        asyncio.run(mw({"type": "http", "path": path, "headers": []}, None, send))
    except (RuntimeError, asyncio.CancelledError):
        pass
    return registry


@pytest.mark.parametrize("status,error,path,label,expected", [
    (200, None, "/v1/recommend", ("/v1/recommend", "200"), 1),
    (503, None, "/v1/recommend", ("/v1/recommend", "503"), 1),
    (404, None, "/nope/U1", ("other", "404"), 1),
    (None, RuntimeError, "/v1/events", ("/v1/events", "500"), 1),
    (200, RuntimeError, "/v1/events", ("/v1/events", "200"), 1),  # failed after answering: the answer counts
    (None, asyncio.CancelledError, "/v1/recommend", ("/v1/recommend", "500"), None),  # client left: no answer
])
def test_responses_are_counted_by_path_and_status(status, error, path, label, expected):
    registry = count(app_answering(status, error), path)
    assert registry.get_sample_value("responses_total", dict(zip(("path", "status"), label))) == expected
