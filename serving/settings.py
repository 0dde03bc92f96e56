"""The serving process's settings: one frozen pydantic-settings object, built in main()/create_app(), never at
import time. Environment: NEWSREC_* with `__` between nested names (NEWSREC_STORE__PREFIX=...)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from streaming.settings import StreamSettings


class StoreSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "newsrec"
    socket_timeout_ms: float = 50.0
    connect_timeout_ms: float = 200.0


class ModelSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    registry: Path = Path("var/registry")
    version: str | None = None          # default: the registry's current version
    backend: str = "onnxruntime"        # "onnxruntime" | "torch"
    intra_op_threads: int = 1           # 2 cores: one per worker
    # onnxruntime: rank with the version's int8 child (`newsrec export`) where the registry holds a verified one
    # (serving.int8_ranker): 1.5x faster over 500 candidates, dAUC +0.0003 on the small world
    int8_ranker: bool = True


class AdmissionSettings(BaseModel):
    """Bounded in-flight /v1/recommend requests per worker; the excess gets 503 + Retry-After (serving.admission).

    Sizing (Little's law): bound = C x W. C = 465 req/s per core (2.15 ms server CPU per recommend, measured with
    loadtest/request_cost.py), W = 34 ms of queued CPU work at most (a third of the 100 ms p99 SLO). Fewer would
    shed below capacity (M/M/1/K: P(full) = rho^K, under 1% up to rho = 0.75 with K = 16). README has the runs."""
    model_config = ConfigDict(frozen=True)
    enabled: bool = True
    max_in_flight: int = Field(default=16, ge=1)
    prefetch_max_in_flight: int = Field(default=8, ge=0)  # `X-Prefetch: 1` requests are shed first
    retry_after_s: int = Field(default=1, ge=0)
    paths: tuple[str, ...] = ("/v1/recommend",)  # one shared bound over these paths
    # POST /v1/events gets its own bound (0: unbounded): a surge's clicks must not queue the event loop in front
    # of admitted recommends and sheds. A shed batch was never acknowledged (202 comes only after the broker's ack),
    # so nothing acknowledged is lost; the app resends it after Retry-After.
    events_max_in_flight: int = Field(default=8, ge=0)
    # Adaptive bounds (0: fixed): while the event loop runs later than this, the bounds shrink (serving.admission)
    target_lag_ms: float = Field(default=3.0, ge=0)
    # ... but never below this many in flight: a loop that lags with 4 requests in flight (~9 ms of work) lags for
    # another reason (a hot swap loading in a thread, a GC pass), and shedding would fail requests for nothing
    min_in_flight: int = Field(default=4, ge=1)


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWSREC_", env_nested_delimiter="__", frozen=True)
    store: StoreSettings = Field(default_factory=StoreSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    log_json: bool = True               # structured JSON lines with request ids on stderr (serving.logging_json)
    catalogue_dir: Path | None = None   # a MIND world whose articles seed the index at start (until the stream)
    retrieval_k: int = 500
    ivf_min_articles: int = Field(default=20_000, ge=1)  # pools this large search by IVF (serving.ivf), smaller: exact
    category_cap: int = 3
    item_features_from_store: bool = False  # the naive baseline only
    # micro-batching of concurrent requests (serving.batching): the most a request waits for others, 0..2 ms.
    # `newsrec bench serve`: user tower + search batching raised the load within the SLA 1.4x and saturation 1.2x;
    # ranker batching on top changed neither (ranker cost is linear in rows) and only added its wait: off.
    micro_batch_wait_ms: float = 2.0    # user tower + index search
    ranker_batch_wait_ms: float = 0.0   # ranker
    # The surge options. The event loop answers sheds only between its own stretches of work; these keep them
    # short, at a cost in latency and CPU below saturation (README, "Load tests"; all three always on, 2 cores:
    # `newsrec bench load`'s canary shed p99 6.6-7.5 ms vs 11.7 ms, but `newsrec bench serve` p99 at 500 req/s
    # 84.7 ms vs 17.8 ms and max RPS within the SLO 486 vs 895). So by default they apply only while this worker
    # sheds (off_loop_when, serving.shed_window); `newsrec bench serve` runs without admission control.
    model_thread: bool = True           # model calls (the batches above) on a thread of their own, off the loop
    loop_turns: bool = True             # one request's CPU stretch per event-loop iteration (serving.loop_turns)
    # sys.setswitchinterval: how long a thread may hold the GIL while another waits (None: Python's own, 5 ms)
    switch_interval_ms: float | None = Field(default=0.5, gt=0)
    off_loop_when: Literal["always", "shedding"] = "shedding"
    default_budget_ms: float = 100.0
    max_budget_ms: float = 1_000.0
    # The world's clock: 0 in production. A synthetic world lives in 2019, so the demo shifts "now" to the end
    # of its log (world_end=True), or by an explicit offset.
    clock_offset_s: float = 0.0
    world_end: bool = False
    # A world replayed at a speed-up (`newsrec bench drift`): from clock_wall_origin_s (Unix) on, the clock runs
    # clock_speedup times faster than the wall: now = t + offset + (t - origin) * (speedup - 1). 1 = real time.
    clock_speedup: float = Field(default=1.0, gt=0)
    clock_wall_origin_s: float = 0.0
    max_events_per_request: int = 100
    max_body_bytes: int = 65_536
    registry_poll_s: float = 2.0        # how often to look for a promoted / rolled-back model version
    # The stream (NEWSREC_STREAM__BOOTSTRAP_SERVERS=...): None = this process neither publishes nor follows it
    stream: StreamSettings | None = None
    follow_stream: bool = True          # tail item-vectors into the index and model-updates (serving.stream_follow)
