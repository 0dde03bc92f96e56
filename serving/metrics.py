"""Prometheus metrics of one app instance (its own registry, so several apps can live in one test process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

STAGE_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)


class ServingMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.stage = Histogram("newsrec_stage_seconds", "Latency per pipeline stage", ["stage"], registry=r,
                               buckets=STAGE_BUCKETS_S)
        self.request = Histogram("newsrec_recommend_seconds", "End-to-end /v1/recommend latency", registry=r,
                                 buckets=STAGE_BUCKETS_S)
        self.source = Counter("newsrec_recommend_source_total", "Answers by the path that served them", ["source"],
                              registry=r)
        self.degraded = Counter("newsrec_degraded_total", "Degraded answers by reason", ["reason"], registry=r)
        self.candidates = Histogram("newsrec_candidates", "Candidates retrieved per request", registry=r,
                                    buckets=(0, 10, 50, 100, 200, 500, 1000))
        self.events = Counter("newsrec_events_total", "Events accepted by type", ["type"], registry=r)
        self.pool = Gauge("newsrec_pool_articles", "Articles in the live index", registry=r)
        self.index_version = Gauge("newsrec_index_version", "Live index snapshot version", registry=r)
        self.ivf_nprobe = Gauge("newsrec_index_ivf_nprobe", "IVF lists probed per search (absent: exact)", registry=r)
        self.ivf_recall = Gauge("newsrec_index_ivf_recall", "IVF recall@k vs exact search on calibration readers",
                                registry=r)
        self.swaps = Counter("newsrec_model_swaps_total", "Model version changes picked up, by outcome", ["outcome"],
                             registry=r)
        self.model = Info("newsrec_model", "Served model version and inference backend", registry=r)
        self.shed = Counter("newsrec_shed_total", "Requests refused by admission control (503), by reason",
                            ["reason"], registry=r)
        self.in_flight = Gauge("newsrec_in_flight_requests", "Admitted /v1/recommend requests in flight (per worker)",
                               registry=r)
        self.loop_lag = Histogram("newsrec_event_loop_lag_seconds",
                                  "How late the event loop ran a timer (sampled every 10 ms by admission control)",
                                  registry=r, buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))
        self.admission_limit = Gauge("newsrec_admission_limit",
                                     "In-flight bound on /v1/recommend now (adaptive: lower while the loop lags)",
                                     registry=r)
        self.responses = Counter("newsrec_http_responses_total", "HTTP responses by path and status code",
                                 ["path", "status"], registry=r)
