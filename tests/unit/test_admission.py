"""Admission control driven directly over ASGI with a fake slow app: the bound holds under a burst, the excess gets
a fast 503 with Retry-After, prefetch is shed first, and no exception or cancellation leaks an in-flight slot."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from serving.admission import AdmissionControl


class SlowApp:
    """Holds every request until `release` is set; records the peak concurrency it saw."""

    def __init__(self, fail: bool = False) -> None:
        self.release, self.inside, self.peak, self.fail = asyncio.Event(), 0, 0, fail

    async def __call__(self, scope, receive, send) -> None:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        try:
            await self.release.wait()
            if self.fail:
                raise RuntimeError("a bug inside the app")
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
        finally:
            self.inside -= 1


async def call(app, path: str = "/v1/recommend", prefetch: bool = False) -> tuple[int, dict, bytes, float]:
    """One request: (status, headers, body, seconds until the response started)."""
    headers = [(b"x-prefetch", b"1")] if prefetch else []
    scope = {"type": "http", "path": path, "method": "GET", "headers": headers}
    out: dict = {}
    started = time.perf_counter()

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"], out["headers"] = message["status"], dict(message["headers"])
            out["t"] = time.perf_counter() - started
        else:
            out["body"] = out.get("body", b"") + message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["headers"], out["body"], out["t"]


def make(inner, max_in_flight=4, prefetch_max=2, retry_after_s=1):
    registry = CollectorRegistry()
    shed = Counter("shed_total", "sheds", ["reason"], registry=registry)
    gauge = Gauge("in_flight", "in flight", registry=registry)
    mw = AdmissionControl(inner, max_in_flight, prefetch_max, retry_after_s, shed_total=shed, in_flight=gauge)
    return mw, registry


def run(scenario):
    """Bounded: a broken bound would otherwise hold requests forever."""
    return asyncio.run(asyncio.wait_for(scenario(), 5))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def hold(mw, n: int, path: str = "/v1/recommend") -> list[asyncio.Task]:
    """Start n requests and let them reach the app (where a SlowApp holds them)."""
    tasks = [asyncio.create_task(call(mw, path=path)) for _ in range(n)]
    await settle()
    return tasks


def test_the_bound_holds_and_the_excess_gets_a_fast_503_with_retry_after():
    async def scenario():
        inner = SlowApp()
        mw, registry = make(inner, max_in_flight=4, retry_after_s=3)
        admitted = await hold(mw, 4)
        shed = await asyncio.gather(*(call(mw) for _ in range(6)))  # return while the 4 are still held
        assert mw.in_flight == 4 and inner.inside == 4
        assert registry.get_sample_value("in_flight") == 4
        inner.release.set()
        done = await asyncio.gather(*admitted)
        return inner, mw, registry, shed, done

    inner, mw, registry, shed, done = run(scenario)
    assert [s for s, *_ in done] == [200] * 4 and inner.peak == 4
    for status, headers, body, seconds in shed:
        assert status == 503 and headers[b"retry-after"] == b"3"
        assert json.loads(body)["error"] == "overloaded" and int(headers[b"content-length"]) == len(body)
        assert seconds < 0.010
    assert registry.get_sample_value("shed_total", {"reason": "overloaded"}) == 6
    assert mw.in_flight == 0 and registry.get_sample_value("in_flight") == 0


def test_every_shed_is_reported_to_on_shed_and_admitted_requests_are_not():
    sheds: list[int] = []

    async def scenario():
        inner = SlowApp()
        mw = AdmissionControl(inner, 2, 1, 1, on_shed=lambda: sheds.append(1))
        admitted = await hold(mw, 2)
        assert sheds == []
        await asyncio.gather(*(call(mw) for _ in range(3)))
        inner.release.set()
        await asyncio.gather(*admitted)

    run(scenario)
    assert len(sheds) == 3


def test_prefetch_is_shed_first_at_its_lower_threshold():
    async def scenario():
        inner = SlowApp()
        mw, registry = make(inner, max_in_flight=4, prefetch_max=2)
        held = await hold(mw, 2)
        prefetch = await call(mw, prefetch=True)  # 2 in flight: at the prefetch bound
        normal = asyncio.create_task(call(mw))    # below the main bound: still admitted
        await settle()
        in_flight = mw.in_flight
        inner.release.set()
        await asyncio.gather(*held, normal)
        after = await asyncio.wait_for(call(mw, prefetch=True), 1)  # idle again: prefetch admitted
        return prefetch, normal.result(), in_flight, after, registry

    prefetch, normal, in_flight, after, registry = run(scenario)
    assert prefetch[0] == 503 and json.loads(prefetch[2])["error"] == "overloaded"
    assert normal[0] == 200 and in_flight == 3 and after[0] == 200
    assert registry.get_sample_value("shed_total", {"reason": "prefetch"}) == 1
    assert registry.get_sample_value("shed_total", {"reason": "overloaded"}) == 0


def test_other_paths_and_non_http_scopes_are_not_limited():
    async def scenario():
        inner = SlowApp()
        mw, _ = make(inner, max_in_flight=1, prefetch_max=0)
        held, = await hold(mw, 1)
        events = asyncio.create_task(call(mw, path="/v1/events"))
        await settle()
        inside = inner.inside
        inner.release.set()
        await asyncio.gather(held, events)
        return inside, events.result()[0]

    inside, status = run(scenario)
    assert inside == 2 and status == 200


def test_events_have_their_own_bound_and_reason_and_do_not_take_recommend_slots():
    async def scenario():
        inner = SlowApp()
        registry = CollectorRegistry()
        shed = Counter("shed_total", "sheds", ["reason"], registry=registry)
        recommend_gate = AdmissionControl(inner, 2, 1, 1, shed_total=shed)
        both = AdmissionControl(recommend_gate, 1, 1, 2, paths=("/v1/events",), shed_total=shed, reason="events")
        events_held = await hold(both, 1, "/v1/events")
        events_shed = await call(both, path="/v1/events")    # events bound (1) reached
        recommends = await hold(both, 2)  # recommend slots untouched by events
        recommend_shed = await call(both)
        inner.release.set()
        done = await asyncio.gather(*events_held, *recommends)
        return events_shed, recommend_shed, done, registry, both, recommend_gate

    events_shed, recommend_shed, done, registry, both, recommend_gate = run(scenario)
    assert events_shed[0] == 503 and events_shed[1][b"retry-after"] == b"2"
    assert json.loads(events_shed[2]) == {"error": "overloaded",
                                          "detail": "events not accepted under load; send them again after "
                                                    "Retry-After"}
    assert recommend_shed[0] == 503 and [s for s, *_ in done] == [200] * 3
    assert registry.get_sample_value("shed_total", {"reason": "events"}) == 1
    assert registry.get_sample_value("shed_total", {"reason": "overloaded"}) == 1
    assert both.in_flight == 0 and recommend_gate.in_flight == 0


def test_no_slot_leaks_when_the_app_raises_or_the_request_is_cancelled():
    async def scenario():
        failing = SlowApp(fail=True)
        mw, _ = make(failing, max_in_flight=2)
        tasks = await hold(mw, 2)
        failing.release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        after_errors = mw.in_flight

        slow = SlowApp()
        mw2, _ = make(slow, max_in_flight=2)
        tasks = await hold(mw2, 2)
        full = mw2.in_flight
        for t in tasks:
            t.cancel()  # the client went away mid-request
        await asyncio.gather(*tasks, return_exceptions=True)
        after_cancel = mw2.in_flight
        slow.release.set()
        again = await asyncio.gather(*(call(mw2) for _ in range(2)))  # full capacity is back
        return results, after_errors, full, after_cancel, again

    results, after_errors, full, after_cancel, again = run(scenario)
    assert all(isinstance(r, RuntimeError) for r in results) and after_errors == 0
    assert full == 2 and after_cancel == 0 and [s for s, *_ in again] == [200, 200]


@pytest.mark.parametrize("kwargs", [dict(max_in_flight=0, prefetch_max=0), dict(max_in_flight=2, prefetch_max=3),
                                    dict(max_in_flight=2, prefetch_max=-1), dict(retry_after_s=-1)])
def test_a_bad_configuration_is_refused(kwargs):
    with pytest.raises(ValueError):
        make(SlowApp(), **kwargs)


@pytest.mark.parametrize("reason", ["prefetch", "busy"])
def test_a_shed_reason_outside_the_metric_labels_is_refused(reason):
    with pytest.raises(ValueError):
        AdmissionControl(SlowApp(), 2, 1, 1, reason=reason)


def test_the_adaptive_bound_shrinks_while_the_loop_lags_and_grows_back():
    from serving.admission import LoopLag

    lag = LoopLag(target_s=0.005, ceiling=16)
    for _ in range(30):
        lag.observe(0.050)   # the loop runs 50 ms late: parsing and shedding alone fill the core
    assert lag.limit == 1
    for _ in range(100):
        lag.observe(0.001)   # on time again: +1 slot per 10 ticks
    assert lag.limit == 11
    for _ in range(100):
        lag.observe(0.0)
    assert lag.limit == 16   # never above the configured bound


def test_a_lagging_loop_lowers_the_bound_the_middleware_applies():
    async def scenario():
        inner = SlowApp()
        registry = CollectorRegistry()
        limit = Gauge("limit", "bound now", registry=registry)
        mw = AdmissionControl(inner, 8, 4, 1, target_lag_ms=5, limit=limit)
        held = await hold(mw, 2)          # starts the lag sampling on this loop
        for _ in range(20):
            time.sleep(0.03)              # block the loop: every sample comes late
            await asyncio.sleep(0.011)
        lagging = registry.get_sample_value("limit")
        shed = await call(mw)             # 2 in flight >= the lowered bound
        inner.release.set()
        await asyncio.gather(*held)
        return lagging, shed

    lagging, shed = run(scenario)
    assert lagging <= 2 and shed[0] == 503


def test_a_lagging_loop_never_sheds_below_the_floor():
    """A hot swap's load thread or a GC pass can make the loop late with hardly any request in flight: the bound
    stops at min_in_flight, so those few are admitted, and only the one past the floor is shed."""
    async def scenario():
        inner = SlowApp()
        mw = AdmissionControl(inner, 8, 4, 1, target_lag_ms=5, min_in_flight=3)
        held = await hold(mw, 1)          # starts the lag sampling on this loop
        for _ in range(20):
            time.sleep(0.03)              # block the loop: every sample comes late
            await asyncio.sleep(0.011)
        bound = mw.limit
        held += await hold(mw, 2)         # 3 in flight: still admitted
        shed = await call(mw)             # the 4th is over the floor
        inner.release.set()
        await asyncio.gather(*held)
        return bound, inner.peak, shed

    bound, peak, shed = run(scenario)
    assert bound == 3 and peak == 3 and shed[0] == 503


@pytest.mark.parametrize("floor", [0, 9])
def test_the_floor_must_lie_within_the_bound(floor):
    with pytest.raises(ValueError):
        AdmissionControl(SlowApp(), 8, 4, 1, target_lag_ms=5, min_in_flight=floor)
