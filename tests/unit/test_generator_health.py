"""GeneratorHealth in a gevent process: the probe's lateness while the process holds its CPU, the CPU share, the
collector's pauses, figures that cover only the time since the previous take, and a bounded sample on long phases."""
from __future__ import annotations

import gc
import time

import gevent
import numpy as np
import pytest

from loadtest.generator_health import GeneratorHealth


def _hold_the_cpu(seconds: float) -> None:
    """What a busy generator does to its readers: no greenlet runs until this returns."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def test_the_probe_sees_the_process_hold_its_cpu_and_the_collectors_pauses():
    health = GeneratorHealth(period_s=0.005)
    health.start()
    try:
        for _ in range(2):  # the hub's start-up and the first take's lazy imports are no part of the idle figures
            gevent.sleep(0.05)
            health.take()
        gevent.sleep(0.1)
        idle = health.take()
        gevent.sleep(0.02)
        _hold_the_cpu(0.08)
        gevent.sleep(0.02)
        gc.collect()  # on a big heap (a whole test session's modules) this alone can hold the process 100 ms:
        gevent.sleep(0.02)  # let the probe record that lateness here, not in the next take
        busy = health.take()
        gevent.sleep(0.05)
        after = health.take()
    finally:
        health.stop()
    assert idle["generator_lag_p50_ms"] is not None
    assert busy["generator_lag_max_ms"] >= 70 > idle["generator_lag_max_ms"]
    assert busy["generator_cpu_share"] > 0.3 and busy["generator_cpu_share"] > 3 * idle["generator_cpu_share"]
    assert busy["generator_gc_ms"] > 0 and busy["generator_gc_max_ms"] > 0
    assert after["generator_lag_max_ms"] < 70 and after["generator_gc_max_ms"] < busy["generator_gc_max_ms"]  # afresh


def test_no_samples_give_none_and_stop_removes_the_gc_hook():
    health = GeneratorHealth()
    health.start()
    figures = health.take()  # no greenlet switch yet: the probe has not run
    health.stop()
    assert figures["generator_lag_p99_ms"] is None and figures["generator_lag_max_ms"] is None
    assert health._on_gc not in gc.callbacks


def test_a_long_phase_keeps_a_bounded_uniform_sample_and_the_exact_max():
    health = GeneratorHealth(max_samples=1_000)
    lags = np.random.default_rng(1).exponential(3.0, 100_000)
    lags[77_777] = 500.0
    for lag in lags:
        health._record(float(lag))
    assert len(health._lags_ms) == 1_000  # an hour-long phase holds what a 10 s one does
    figures = health.take()
    assert figures["generator_lag_max_ms"] == 500.0
    assert figures["generator_lag_p50_ms"] == pytest.approx(np.percentile(lags, 50), rel=0.15)
    assert figures["generator_lag_p99_ms"] == pytest.approx(np.percentile(lags, 99), rel=0.3)
    assert health._lags_ms == [] and health.take()["generator_lag_max_ms"] is None  # the next phase starts afresh
