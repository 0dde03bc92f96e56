"""The FastAPI app: `create_app(settings)` reads as the service's table of contents. Its lifespan builds the
pipeline (store, verified model version, item table, live index) and closes it; routes only translate HTTP."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import generate_latest
from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import RedisError

from data.schema import NEWS_ID_PATTERN, USER_ID_PATTERN
from feature_store.redis_store import RedisFeatureStore
from recsys.dataset import Articles
from recsys.registry import ModelRegistry, RegistryError
from serving.admission import GATES_STATE_KEY, AdmissionControl
from serving.articles_api import articles_router
from serving.backends import load_backend
from serving.bounded_body import bounded_body
from serving.backends.base import InferenceBackend
from recsys.bundle import RANKER
from recsys.catalogue import load_catalogue
from serving.errors import ApiError, InvalidInput, NotReady, PayloadTooLarge
from serving.http_metrics import COUNTED_PATHS, ResponseCounter
from serving.index import LiveIndex
from serving.ivf import calibration_readers
from serving.int8_ranker import int8_ranker_child
from serving.item_counters import concat_counters
from recsys.item_table import ItemTable
from serving.logging_json import RequestIdMiddleware, install_json_logging, request_id_of
from serving.metrics import ServingMetrics
from serving.page import page_router
from serving.pipeline import STORE_ERRORS, Pipeline, PipelineSettings, recommend
from serving.settings import ServeSettings
from serving.shed_window import ShedWindow
from serving.stream_follow import start_following
from streaming.events import ClickEvent, ImpressionEvent
from streaming.producer import EventPublisher, PublishError

log = logging.getLogger("newsrec.serving")
SHUTDOWN_WAIT_S = 5.0
# a full read of a 50k pool costs ~0.2 s of Redis and ~0.4 s of this worker (py-spy, bench serve: 4-6% of a
# worker's CPU at 10 s, per worker); counters over 1 h+ windows move little in 20 s
POPULARITY_REFRESH_S = 20.0
EVENTS_RETRY_AFTER_S = 1  # the publisher retries a down broker's connection every second
USER_ID = USER_ID_PATTERN.pattern
NEWS_ID = NEWS_ID_PATTERN.pattern


class Event(BaseModel):
    type: Literal["click", "impression"]
    event_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    user_id: str = Field(pattern=USER_ID)
    news_id: str | None = Field(default=None, pattern=NEWS_ID)            # click
    news_ids: list[str] = Field(default_factory=list, max_length=100)      # impression, in slot order
    time_s: float | None = None                                            # default: now


class Events(BaseModel):
    events: list[Event] = Field(min_length=1)


async def _refresh_popularity(app: FastAPI, chunk: int = 250) -> None:
    """Keep the pool current: expiry, and the item counters every request ranks with (serving.item_counters),
    whose 6 h clicks are also the index's popularity dimension. The store is the source of truth.

    The first refresh reads at once (until it lands, requests read counters from the store); later ones spread
    their chunked reads over most of the period, each chunk at its own read time, so neither Redis nor this event
    loop (which decodes them) is held for more than ~1 ms at a time: back to back, a 50k-article refresh added
    ~10 ms to this worker's p99 at 500 req/s. The index rebuild runs in a thread meanwhile (tens of ms at 50k).
    """
    pause_s = 0.0
    while True:
        p = app.state.pipeline
        await asyncio.to_thread(p.index.expire, app.state.now())  # first, so only live articles are read
        snap = p.index.snapshot
        ids = tuple(snap.news_ids.tolist())
        parts, times = [], []
        try:
            for i in range(0, len(ids), chunk):
                times.append(now := app.state.now())
                parts.append(await p.store.get_item_counters(ids[i:i + chunk], now))
                await asyncio.sleep(pause_s)
        except app.state.store_errors:
            parts = []
        if parts:
            read_at = np.repeat(times, [len(part.news_ids) for part in parts])
            await asyncio.to_thread(p.index.set_counters, concat_counters(parts), read_at, snap)
        pause_s = 0.8 * POPULARITY_REFRESH_S / max(1, -(-len(ids) // chunk))
        await asyncio.sleep(0.2 * POPULARITY_REFRESH_S)


def _load_models(settings: ServeSettings, version: str | None, catalogue: Articles | None
                 ) -> tuple[str, InferenceBackend, ItemTable, LiveIndex]:
    """A verified model version with its item table and index built and warmed; raises if anything is off."""
    registry = ModelRegistry(settings.model.registry)
    loaded = registry.load(version)  # sha256-verified, or it raises
    int8 = int8_ranker_child(registry, loaded) if settings.model.int8_ranker else None
    backend = load_backend(settings.model.backend, loaded.path, settings.model.intra_op_threads,
                           int8.path / RANKER if int8 is not None else None)
    if int8 is not None:
        log.info("version %s ranks with the int8 ranker of %s", loaded.version, int8.version)
    spec = backend.spec
    items = ItemTable(spec.embedding_dim)
    index = LiveIndex(spec.embedding_dim, spec.retrieval_popularity_weight, items,  # upserts resolve table rows
                      ivf_min_articles=settings.ivf_min_articles)
    if catalogue is not None:
        vecs = backend.item_vectors(catalogue.model_inputs(spec))
        items.upsert(catalogue.news_ids, vecs, catalogue.subcategory_name, catalogue.category_name,
                     catalogue.publish_s)
        index.upsert(catalogue.news_ids, vecs, catalogue.publish_s, catalogue.expire_s)
        # a large pool searches by IVF: its nprobe is chosen against exact search on reader vectors (serving.ivf)
        index.set_calibration_queries(calibration_readers(backend.user_vectors, vecs, history_len=spec.history_len))
    # warm-up: first calls allocate; do them before any request can see this version
    backend.user_vectors(np.full((1, spec.history_len), -1), np.zeros((1, spec.embedding_dim), np.float32))
    backend.rank(np.zeros((1, len(spec.ranker_features)), np.float32))
    # What is loaded by now lives as long as the version: out of the cyclic GC's sight, or every full collection
    # re-scans it (measured: ~250 ms for the ~270k objects of a 60k-article catalogue, every ~1-2k requests: a
    # pause that sets the p99 by itself). O(1); no collect() first, which would hold the GIL as long.
    gc.freeze()
    return loaded.version, backend, items, index


def _build(settings: ServeSettings, metrics: ServingMetrics, shedding: ShedWindow
           ) -> tuple[Pipeline, float, Articles | None]:
    catalogue = load_catalogue(settings.catalogue_dir) if settings.catalogue_dir is not None else None
    version, backend, items, index = _load_models(settings, settings.model.version, catalogue)
    offset = settings.clock_offset_s
    if settings.world_end and catalogue is not None:
        offset = float(catalogue.publish_s.max()) - time.time()
    store = RedisFeatureStore(settings.store.redis_url, settings.store.prefix, backend.spec.history_len,
                              settings.store.socket_timeout_ms, settings.store.connect_timeout_ms)
    metrics.model.info({"version": version, "backend": backend.name})
    pipeline = Pipeline(store, backend, index, items, version,
                        PipelineSettings(retrieval_k=settings.retrieval_k, category_cap=settings.category_cap,
                                         item_features_from_store=settings.item_features_from_store,
                                         micro_batch_wait_ms=settings.micro_batch_wait_ms,
                                         ranker_batch_wait_ms=settings.ranker_batch_wait_ms,
                                         model_thread=settings.model_thread, loop_turns=settings.loop_turns),
                        store_errors=(*STORE_ERRORS, RedisError), off_loop_now=shedding)
    return pipeline, offset, catalogue


async def _follow_registry(app: FastAPI, settings: ServeSettings, metrics: ServingMetrics) -> None:
    """Hot swap: when the registry's current version changes (promote or rollback), load, verify and warm it off
    the event loop, then replace the pipeline in one assignment. Requests in flight keep the pipeline they
    started with. A version that fails verification is refused and the old one keeps serving."""
    registry = ModelRegistry(settings.model.registry)
    refused: str | None = None
    while True:
        # a model-updates record (serving.stream_follow) wakes it at once. asyncio.wait, not wait_for: on 3.11
        # wait_for can swallow a cancellation racing its inner wait (gh-86296), and shutdown then hangs
        poke = asyncio.ensure_future(app.state.registry_poke.wait())
        try:
            await asyncio.wait({poke}, timeout=settings.registry_poll_s)
        finally:
            poke.cancel()
        app.state.registry_poke.clear()
        with contextlib.suppress(RegistryError, OSError):
            current = registry.current()
            old = app.state.pipeline
            if current in (None, old.model_version, refused):
                continue
            try:
                version, backend, items, index = await asyncio.to_thread(
                    _load_models, settings, current, app.state.catalogue)
            except (RegistryError, OSError, ValueError) as exc:
                refused = current
                metrics.swaps.labels("refused").inc()
                log.error("refusing model version %s, still serving %s: %s", current, old.model_version, exc)
                continue
            snap = old.index.snapshot
            index.set_popularity(snap.news_ids, snap.clicks_6h)  # counters carry over; only vectors changed
            app.state.pipeline = replace(old, backend=backend, items=items, index=index, model_version=version)
            refused = None
            metrics.swaps.labels("swapped").inc()
            metrics.model.info({"version": version, "backend": backend.name})
            log.info("serving model version %s (was %s)", version, old.model_version)


def _stream_unavailable(detail: str) -> JSONResponse:
    return JSONResponse({"error": "stream_unavailable", "detail": detail}, status_code=503,
                        headers={"Retry-After": str(EVENTS_RETRY_AFTER_S)})


def create_app(settings: ServeSettings) -> FastAPI:
    metrics = ServingMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pipeline, offset, app.state.catalogue = _build(settings, metrics, shedding)
        speedup, origin = settings.clock_speedup, settings.clock_wall_origin_s
        app.state.pipeline = pipeline
        app.state.now = lambda: (t := time.time()) + offset + (t - origin) * (speedup - 1.0)
        app.state.store_errors = pipeline.store_errors
        app.state.registry_poke = asyncio.Event()
        app.state.publisher = EventPublisher(settings.stream, "newsrec-api") if settings.stream else None
        tasks = [asyncio.create_task(_refresh_popularity(app)),
                 asyncio.create_task(_follow_registry(app, settings, metrics))]
        tasks += await start_following(app, settings.stream, settings.follow_stream, metrics.registry)
        app.state.ready = True
        try:
            yield {GATES_STATE_KEY: gates}  # lifespan state: uvicorn hands it to serving.fast_shed's protocol
        finally:
            for task in tasks:
                task.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_S)  # bounded: shutdown never hangs
            if stuck:
                log.error("%d background task(s) did not stop within %.0f s", len(stuck), SHUTDOWN_WAIT_S)
            if app.state.publisher is not None:
                await app.state.publisher.close()
            app.state.pipeline.in_flight.close()  # shared by every version swapped in
            await pipeline.store.close()

    app = FastAPI(title="newsrec", version="0.1.0", lifespan=lifespan,
                  description="What should this reader see now? Two-tower retrieval + ranker, fresh from the stream.")
    app.state.ready = False
    app.include_router(page_router(settings))  # the demo page at / and its read-only JSON
    app.include_router(articles_router(settings))  # publish an article to the stream; is it live here?
    if settings.log_json:
        install_json_logging()
    gates: dict = {}  # raw path -> its AdmissionControl, filled when the middleware stack is built (first call)
    shedding = ShedWindow(settings.off_loop_when == "always", settings.switch_interval_ms)
    if settings.admission.enabled:  # sheds before routing, validation or any pipeline work
        a = settings.admission

        def count_503(path: str) -> None:  # a protocol-level shed (serving.fast_shed) passes no ResponseCounter
            metrics.responses.labels(path if path in COUNTED_PATHS else "other", "503").inc()

        app.add_middleware(AdmissionControl, max_in_flight=a.max_in_flight, retry_after_s=a.retry_after_s,
                           prefetch_max_in_flight=a.prefetch_max_in_flight, paths=a.paths,
                           shed_total=metrics.shed, in_flight=metrics.in_flight, target_lag_ms=a.target_lag_ms,
                           limit=metrics.admission_limit, min_in_flight=min(a.min_in_flight, a.max_in_flight),
                           lag_seconds=metrics.loop_lag, gates=gates, on_fast_shed=count_503,
                           on_shed=shedding.shed)
        if a.events_max_in_flight:
            app.add_middleware(AdmissionControl, max_in_flight=a.events_max_in_flight, retry_after_s=a.retry_after_s,
                               prefetch_max_in_flight=a.events_max_in_flight, paths=("/v1/events",),
                               shed_total=metrics.shed, reason="events", target_lag_ms=a.target_lag_ms,
                               min_in_flight=min(a.min_in_flight, a.events_max_in_flight), gates=gates,
                               on_fast_shed=count_503, on_shed=shedding.shed)
    app.add_middleware(RequestIdMiddleware)  # outside admission: sheds carry a request id too
    app.add_middleware(ResponseCounter, responses=metrics.responses)  # added last = outermost of ours

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "invalid_input", "detail": reasons}, status_code=422)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        request_id = request_id_of(request.state)  # the id in the X-Request-Id header and the log record
        log.exception("unhandled error, request_id=%s", request_id, extra={"request_id": request_id})
        return JSONResponse({"error": "internal", "request_id": request_id}, status_code=500,
                            headers={"X-Request-Id": request_id})  # this handler sits outside our middleware

    @app.get("/v1/recommend")
    async def recommend_route(
        user_id: Annotated[str, Query(pattern=USER_ID, description="MIND user id, e.g. U123")],
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        budget_ms: Annotated[float | None, Header(alias="X-Request-Budget-Ms")] = None,
    ) -> Response:
        if not app.state.ready:
            raise NotReady("model and index are still loading")
        budget = settings.default_budget_ms if budget_ms is None else budget_ms
        if not 1 <= budget <= settings.max_budget_ms:
            raise InvalidInput(f"X-Request-Budget-Ms must be in 1..{settings.max_budget_ms:g}")
        started = time.perf_counter()
        p = app.state.pipeline
        rec = await recommend(p, user_id, k, app.state.now(), started + budget / 1e3)
        metrics.request.observe(time.perf_counter() - started)
        metrics.source.labels(rec.source).inc()
        for reason in rec.degraded:
            metrics.degraded.labels(reason).inc()
        for stage, ms in rec.timings_ms.items():
            metrics.stage.labels(stage).observe(ms / 1e3)
        table = p.items.snapshot
        rows = table.rows(rec.news_ids)
        body = {"user_id": user_id, "source": rec.source, "degraded": list(rec.degraded),
                "model_version": rec.model_version, "index_version": rec.index_version,
                "items": [{"news_id": n, "score": round(s, 6), "category": str(c)} for n, s, c in
                          zip(rec.news_ids, rec.scores, table.labels(rows, "category"))],
                "timings_ms": rec.timings_ms}
        timing = ", ".join(f"{stage};dur={ms}" for stage, ms in rec.timings_ms.items())
        return JSONResponse(body, headers={"Server-Timing": timing})

    @app.post("/v1/events", status_code=202)
    async def events_route(request: Request) -> Response:
        """Validate against the item table, publish to the clicks / impressions topics (key: user id) and answer
        202 once the broker acknowledged every event. The feature updater applies them (once per event id);
        this process never writes user state itself."""
        body = await bounded_body(request, settings.max_body_bytes)
        try:
            batch = Events.model_validate_json(body)
        except ValueError as exc:
            raise InvalidInput(str(exc).splitlines()[0]) from None
        if len(batch.events) > settings.max_events_per_request:
            raise PayloadTooLarge(f"at most {settings.max_events_per_request} events per request")
        table, now = app.state.pipeline.items.snapshot, app.state.now()
        records = []
        for e in batch.events:
            ids = [e.news_id] if e.type == "click" else e.news_ids
            if not ids or None in ids:
                raise InvalidInput(f"event {e.event_id}: a click needs news_id, an impression news_ids")
            rows = table.rows(ids)
            if (rows < 0).any():
                raise InvalidInput(f"event {e.event_id}: unknown news id {ids[int(np.argmin(rows))]}")
            fields = {"event_id": e.event_id, "user_id": e.user_id, "time_s": now if e.time_s is None else e.time_s}
            try:
                event = (ClickEvent(**fields, news_id=ids[0]) if e.type == "click"
                         else ImpressionEvent(**fields, news_ids=ids))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(map(str, first["loc"]))
                raise InvalidInput(f"event {e.event_id}: {where}: {first['msg']}") from None
            records.append((e.type, e.user_id, event))
        publisher = app.state.publisher
        if settings.stream is None or publisher is None:
            return _stream_unavailable("this server has no stream configured (NEWSREC_STREAM__BOOTSTRAP_SERVERS)")
        topic = {"click": settings.stream.topics.name("clicks"),
                 "impression": settings.stream.topics.name("impressions")}
        try:
            await publisher.publish_many([(topic[kind], user_id, event) for kind, user_id, event in records])
        except PublishError as exc:
            log.warning("events not published: %s", exc)
            return _stream_unavailable("the event stream did not acknowledge the events; retry the same events "
                                       "(their ids make a retry safe)")
        for e in batch.events:
            metrics.events.labels(e.type).inc()
        return JSONResponse({"accepted": len(records)}, status_code=202)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> Response:
        ready = (bool(app.state.ready) and app.state.pipeline.index.snapshot.size > 0
                 and getattr(app.state, "stream_ready", True))  # the stream's backlog applied (stream_follow)
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics_route() -> Response:
        if app.state.ready:
            metrics.pool.set(app.state.pipeline.index.snapshot.size)
            metrics.index_version.set(app.state.pipeline.index.snapshot.version)
            if (ivf := app.state.pipeline.index.ivf_stats) is not None:
                metrics.ivf_nprobe.set(ivf.nprobe)
                metrics.ivf_recall.set(ivf.recall if ivf.recall is not None else float("nan"))
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    return app
