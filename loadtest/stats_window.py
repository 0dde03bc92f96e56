"""Figures for one phase of a load test (a ramp step, a surge's hold) from Locust's cumulative stats: snapshot at
the phase start, difference at its end. Also the request names the readers report under, defined once."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from locust.stats import RequestStats, calculate_response_time_percentile, diff_response_time_dicts

RECOMMEND = "/v1/recommend"                    # admitted, answered 200
RECOMMEND_PREFETCH = "/v1/recommend (prefetch)"  # admitted speculative fetches (X-Prefetch: 1)
RECOMMEND_SHED = "/v1/recommend (shed)"        # deliberate 503 from admission control: not a failure
PREFETCH_SHED = "/v1/recommend (prefetch shed)"
EVENTS = "/v1/events"
ARTICLES = "/v1/articles"
SLO_MS = 100  # an answer later than this is not goodput (loadtest.load_report judges the same SLO)


@dataclass(frozen=True)
class _Mark:
    at: float
    requests: dict[str, int]
    failures: int
    times: dict[str, dict[int, int]]


class PhaseWindow:
    """`begin(label)` then `end()` -> that phase's figures: goodput (admitted recommend answers/s), their p50/p99
    (ms, Locust's rounding: 1 ms below 100 ms; prefetch excluded), shed rate, share and p99, failures (all names)."""

    def __init__(self, stats: RequestStats, clock: Callable[[], float] = time.monotonic) -> None:
        self.stats, self.clock, self.label, self._mark = stats, clock, "", None

    def _snapshot(self) -> _Mark:
        entries = self.stats.entries
        return _Mark(self.clock(), {name: e.num_requests for (name, _), e in entries.items()},
                     self.stats.total.num_failures,
                     {name: dict(e.response_times) for (name, _), e in entries.items()
                      if name in (RECOMMEND, RECOMMEND_SHED)})

    def begin(self, label: str) -> None:
        self.label, self._mark, self._wall = label, self._snapshot(), time.time()

    def end(self, **extra: float) -> dict:
        if self._mark is None:
            raise RuntimeError("end() before begin()")
        old, new = self._mark, self._snapshot()
        seconds = max(new.at - old.at, 1e-9)
        count = {name: n - old.requests.get(name, 0) for name, n in new.requests.items()}

        def pct(name: str, q: float) -> float | None:
            times = diff_response_time_dicts(new.times.get(name, {}), old.times.get(name, {}))
            n = sum(times.values())
            return float(calculate_response_time_percentile(times, n, q)) if n else None

        admitted = count.get(RECOMMEND, 0) + count.get(RECOMMEND_PREFETCH, 0)
        answered = diff_response_time_dicts(new.times.get(RECOMMEND, {}), old.times.get(RECOMMEND, {}))
        within = sum(n for ms, n in answered.items() if ms <= SLO_MS)  # Locust's buckets: 1 ms below 100 ms
        shed = count.get(RECOMMEND_SHED, 0) + count.get(PREFETCH_SHED, 0)
        out = {"phase": self.label, "seconds": round(seconds, 2),
               "goodput_rps": round(admitted / seconds, 1),  # admitted recommend answers, prefetch included
               # the answers a reader could use: admitted (not prefetch) and within the SLO
               "within_slo_rps": round(within / seconds, 1),
               "recommend_p50_ms": pct(RECOMMEND, 0.5), "recommend_p99_ms": pct(RECOMMEND, 0.99),
               "shed_rps": round(shed / seconds, 1),
               "shed_share": round(shed / (shed + admitted), 4) if shed + admitted else 0.0,
               "shed_p99_ms": pct(RECOMMEND_SHED, 0.99),
               "events_rps": round(count.get(EVENTS, 0) / seconds, 1),
               "failures": new.failures - old.failures,
               "start_s": round(self._wall, 3),  # wall clock: other measurements of the run are cut by it
               **extra}
        self._mark = None
        return out
