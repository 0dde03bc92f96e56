"""How late the load generator itself runs, per phase: Locust times a request from sending it to the moment its
reader's greenlet runs again, so any wait for this process's CPU is in every response time it reports.

A probe greenlet asks to wake every 10 ms and records how late it woke: the same wait a reader whose answer is
already in its socket has before Locust reads it. With it, the process's CPU share and the garbage collector's
pauses. These figures say how much of Locust's latency is Locust's own (loadtest.canary times the server without it).
"""
from __future__ import annotations

import gc
import time

import gevent
import numpy as np

PERIOD_S = 0.01
# Lateness samples kept per phase: a uniform reservoir past this (one per 10 ms fills it in ~11 min), the max exact.
MAX_SAMPLES = 65_536


class GeneratorHealth:
    """`start()` in the generator's process (a greenlet is spawned), `take()` at each phase boundary -> the figures
    since the previous take, `stop()` at the end."""

    def __init__(self, period_s: float = PERIOD_S, max_samples: int = MAX_SAMPLES) -> None:
        self.period_s, self.max_samples = period_s, max_samples
        self._lags_ms: list[float] = []
        self._lag_count, self._lag_max = 0, 0.0
        self._rng = np.random.default_rng(0)
        self._gc_total_ms, self._gc_max_ms = 0.0, 0.0
        self._gc_started = 0.0
        self._probe: gevent.Greenlet | None = None
        self._since = (time.perf_counter(), time.process_time())

    def start(self) -> None:
        if self._probe is None:
            gc.callbacks.append(self._on_gc)
            self._probe = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.kill(block=False)
            self._probe = None
            gc.callbacks.remove(self._on_gc)

    def _run(self) -> None:
        while True:
            asked = time.perf_counter()
            gevent.sleep(self.period_s)
            self._record(max(time.perf_counter() - asked - self.period_s, 0.0) * 1e3)

    def _record(self, lag_ms: float) -> None:
        """Keep a uniform sample of at most max_samples lateness values (reservoir sampling) and the exact max."""
        self._lag_count += 1
        self._lag_max = max(self._lag_max, lag_ms)
        if len(self._lags_ms) < self.max_samples:
            self._lags_ms.append(lag_ms)
        elif (j := int(self._rng.integers(self._lag_count))) < self.max_samples:
            self._lags_ms[j] = lag_ms

    def _on_gc(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            pause = (time.perf_counter() - self._gc_started) * 1e3
            self._gc_total_ms, self._gc_max_ms = self._gc_total_ms + pause, max(self._gc_max_ms, pause)

    def take(self) -> dict:
        """Since the previous take: the probe's lateness p50/p99/max (ms), this process's CPU share (1.0 = one core
        busy all the time) and the collector's total and longest pause (ms)."""
        wall, cpu = time.perf_counter(), time.process_time()
        lags, lag_max = np.asarray(self._lags_ms), self._lag_max
        gc_total, gc_max = self._gc_total_ms, self._gc_max_ms
        self._lags_ms, self._lag_count, self._lag_max, self._gc_total_ms, self._gc_max_ms = [], 0, 0.0, 0.0, 0.0
        (wall0, cpu0), self._since = self._since, (wall, cpu)

        def q(p: float) -> float | None:
            return round(float(np.percentile(lags, p)), 1) if lags.size else None
        return {"generator_lag_p50_ms": q(50), "generator_lag_p99_ms": q(99),
                "generator_lag_max_ms": round(lag_max, 1) if lags.size else None,
                "generator_cpu_share": round((cpu - cpu0) / max(wall - wall0, 1e-9), 3),
                "generator_gc_ms": round(gc_total, 1), "generator_gc_max_ms": round(gc_max, 1)}
