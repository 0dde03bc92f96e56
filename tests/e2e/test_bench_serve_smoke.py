"""`newsrec bench serve` end to end at a tiny scale: real Redis, two real server processes (optimized and
naive), open-loop load, JSON + PNG written. Bounded: 2 s of 20 req/s per system."""
from __future__ import annotations

import json

import pytest

from loadtest.bench_serve import BenchConfig, run

pytestmark = pytest.mark.slow


def test_bench_serve_runs_both_systems_and_writes_results(tiny_trained, tmp_path):
    world, registry = tiny_trained
    cfg = BenchConfig(world=world, registry=registry, out=tmp_path / "bench", live_articles=2_000, rates=(20.0,),
                      step_s=2.0, materialize_impressions=1_000)
    results = run(cfg)
    saved = json.loads((tmp_path / "bench" / "bench_serve.json").read_text())
    assert saved["systems"].keys() == {"optimized", "naive"} == results["systems"].keys()
    for system in saved["systems"].values():
        step = system["steps"][0]
        assert step["errors"] == 0 and step["ok"] > 20 and step["p50_ms"] > 0
        assert {"features", "retrieval", "ranker"} <= set(system["stage_ms"])
        assert int(float(system["pool"])) >= 2_000
    assert (tmp_path / "bench" / "bench_serve.png").stat().st_size > 10_000
