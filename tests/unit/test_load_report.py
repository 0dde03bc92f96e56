"""The `bench load` report builder on synthetic runs: per-second series, acceptance checks, ratios and files."""
from __future__ import annotations

import ast
import csv
from pathlib import Path

from loadtest import load_report
from loadtest.bench_load import capacity_step, parse_metrics
from loadtest.load_report import RECOMMEND, RECOMMEND_SHED


def _phase(name, goodput, p99, shed_rps=0.0, shed_p99=None, failures=0, seconds=10.0):
    return {"phase": name, "seconds": seconds, "goodput_rps": goodput, "recommend_p50_ms": p99 / 3,
            "recommend_p99_ms": p99, "shed_rps": shed_rps, "shed_share": 0.0, "shed_p99_ms": shed_p99,
            "events_rps": 1.0, "failures": failures}


def _system(c, hold_goodput, hold_p99, shed_p99, failures=0, hold_offered=None):
    hold_shed = (5 * c if hold_offered is None else hold_offered) - hold_goodput
    history = [{"t": 1000.0 + i, "users": 10 + i, "failures": 0,
                "counts": {RECOMMEND: 100 * i, RECOMMEND_SHED: 20 * i}, "recommend_p50_ms": 5.0,
                "recommend_p99_ms": 40.0, "shed_p99_ms": 2.0} for i in range(5)]
    metrics = [{"t": 1000.0 + i, "serve": {"newsrec_degraded_total": 3.0 * i, "newsrec_shed_total": 20.0 * i},
                "worker-features": {"newsrec_stream_consumer_lag": 7.0}} for i in range(5)]
    phases = [_phase("warm", c / 2, 20), _phase("rise", c, 30, 5, shed_p99),
              _phase("hold", hold_goodput, hold_p99, hold_shed, shed_p99, failures), _phase("decay", c, 25),
              _phase("tail", c / 2, 20)]
    return {"capacity_rps": c, "surge_users": {"base": 5, "peak": 50}, "metrics": metrics,
            "surge": {"phases": phases, "history": history, "spans_s": [10, 5, 20, 10, 5]}}


def test_names_match_the_locust_side():
    # read, not imported: importing locust would monkey-patch this test process with gevent
    tree = ast.parse((Path(load_report.__file__).parent / "stats_window.py").read_text())
    names = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
             if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    for name in ("RECOMMEND", "RECOMMEND_PREFETCH", "RECOMMEND_SHED", "PREFETCH_SHED"):
        assert getattr(load_report, name) == names[name]


def test_series_turns_cumulative_counts_into_rates_and_joins_the_scraped_metrics():
    s = _system(100, 95, 60, 3)
    rows = load_report.series(s["surge"], s["metrics"])
    assert len(rows) == 4 and rows[0]["t"] == 1.0
    assert rows[-1]["admitted_rps"] == 100 and rows[-1]["shed_rps"] == 20 and rows[-1]["offered_rps"] == 120
    assert rows[-1]["fallback_rps"] == 3 and rows[-1]["server_shed_rps"] == 20 and rows[-1]["lag_features"] == 7


def test_checks_pass_and_fail_on_each_target():
    good = load_report.surge_checks(_system(100, 95, 60, 3))
    assert all(good["checks"].values()) and good["shed_total"] == 5 * 10 + 405 * 10
    assert good["hold_offered_over_C"] == 5.0
    bad = load_report.surge_checks(_system(100, 80, 140, 12, failures=2, hold_offered=300))["checks"]
    assert not any(bad.values())


def test_a_run_that_shed_nothing_has_no_shed_latency_to_judge():
    quiet = load_report.surge_checks(_system(100, 95, 60, None))
    assert quiet["checks"]["shed_p99_under_10ms"] is None
    results = {"command": "x", "cpus": 2, "systems": {"naive": _system(100, 95, 60, None)}}
    summary = load_report.summarize(results)
    assert summary["naive"]["met"]  # n/a does not fail the run
    results["summary"] = summary
    assert "- shed_p99_under_10ms: n/a" in load_report.markdown(results)


def test_write_produces_every_artifact_with_ratios(tmp_path):
    results = {"command": "newsrec bench load", "cpus": 2,
               "systems": {"optimized": _system(300, 290, 60, 3), "naive": _system(100, 40, 900, None)}}
    hold = results["systems"]["optimized"]["surge"]["phases"][2]
    hold |= {"generator_lag_p50_ms": 4.7, "generator_lag_p99_ms": 33.4, "generator_lag_max_ms": 55.7,
             "generator_cpu_share": 0.62, "generator_gc_ms": 1646.0, "generator_gc_max_ms": 29.6}
    load_report.write(results, tmp_path)
    assert results["summary"]["optimized"]["generator_lag_p99_ms_worst_phase"] == 33.4
    assert results["summary"]["naive"]["generator_lag_p99_ms_worst_phase"] is None  # a run from before the probe
    ratios = results["summary"]["ratios_optimized_over_naive"]
    assert ratios["capacity"] == 3.0 and ratios["surge_p99"] == round(60 / 900, 2)
    assert results["summary"]["optimized"]["met"] and not results["summary"]["naive"]["met"]
    rows = list(csv.DictReader((tmp_path / "bench_load_series.csv").open()))
    assert {r["system"] for r in rows} == {"optimized", "naive"} and len(rows) == 8
    md = (tmp_path / "bench_load.md").read_text()
    assert "| optimized | 300 |" in md and "NOT met" in md
    assert "| hold | 290 | 20.0 / 60 | 3 | 4.7 / 33.4 / 55.7 | 0.62 | 1646.0 / 29.6 |" in md
    assert (tmp_path / "bench_load.png").stat().st_size > 20_000


def test_capacity_from_the_best_step_within_the_slo_and_metrics_parsing():
    ramp = {"capacity_rps": 60.0, "phases": [{"users": 10, "goodput_rps": 30.0}, {"users": 20, "goodput_rps": 60.0},
                                            {"users": 30, "goodput_rps": 70.0}]}
    assert capacity_step(ramp) == (60.0, 3.0)
    page = ('# TYPE newsrec_shed_total counter\nnewsrec_shed_total{reason="overloaded"} 4.0\n'
            'newsrec_shed_total{reason="prefetch"} 1.0\n# TYPE newsrec_stage_seconds histogram\n'
            'newsrec_stage_seconds_sum{stage="rank"} 0.5\nnewsrec_stage_seconds_count{stage="rank"} 10.0\n')
    got = parse_metrics(page)
    assert got["newsrec_shed_total"] == 5.0 and got["newsrec_stage_seconds_count:rank"] == 10.0


def test_the_start_phase_is_reported_but_not_judged():
    s = _system(100, 95, 60, 3)
    s["surge"]["phases"].insert(0, _phase("start", 50, 190, 10, 250, seconds=5))
    checks = load_report.surge_checks(s)
    assert checks["admitted_p99_ms_worst_phase"] == 60 and checks["shed_p99_ms_worst_phase"] == 3
    assert all(checks["checks"].values())


def test_canary_figures_by_phase_and_its_checks():
    from loadtest.canary import phase_figures

    phases = [{"phase": "start", "start_s": 100.0, "seconds": 5}, {"phase": "hold", "start_s": 105.0, "seconds": 10}]
    records = [[101.0, 200, 80.0], [101.5, 503, 40.0]]  # start: slow, not judged
    records += [[105.0 + i / 10, 200, 5.0 + i % 7] for i in range(60)]
    records += [[106.0 + i / 10, 503, 2.0 + i % 3] for i in range(40)]
    records += [[120.0, 200, 1.0]]  # after the last phase: ignored
    figs = phase_figures(records, phases)
    assert figs[0] == {"phase": "start", "start_s": 100.0, "seconds": 5, "requests": 2, "admitted": 1, "shed": 1, "errors": 0, "admitted_p50_ms": 80.0,
                       "admitted_p99_ms": 80.0, "shed_p50_ms": 40.0, "shed_p99_ms": 40.0}
    assert figs[1]["requests"] == 100 and figs[1]["admitted_p99_ms"] < 12 and figs[1]["shed_p99_ms"] < 5
    s = _system(100, 95, 140, 30)  # Locust's own figures miss the latency targets ...
    s["surge"]["canary"] = {"rps": 20.0, "phases": figs}
    results = {"command": "x", "cpus": 2, "systems": {"optimized": s}}
    summary = load_report.summarize(results)["optimized"]
    assert not summary["met_locust_timing"] and summary["met_with_canary_latency"]  # ... the canary's meet them
    assert summary["met"]  # the verdict times latency with the canary
    assert summary["canary_checks"] == {"admitted_p99_under_100ms": True, "shed_p99_under_10ms": True,
                                        "no_errors_besides_sheds": True}
    failing = _system(100, 95, 140, 30, failures=2)  # errors are Locust's to count: the canary cannot excuse them
    failing["surge"]["canary"] = s["surge"]["canary"]
    assert not load_report.summarize({"systems": {"optimized": failing}})["optimized"]["met"]
    low = _system(100, 80, 140, 30)  # nor goodput under 90% of C
    low["surge"]["canary"] = s["surge"]["canary"]
    assert not load_report.summarize({"systems": {"optimized": low}})["optimized"]["met"]
    figs[1]["shed_p99_ms"] = 12.0
    assert not load_report.summarize(results)["optimized"]["met_with_canary_latency"]
    assert not load_report.summarize(results)["optimized"]["met"]
    results["summary"] = load_report.summarize(results)
    assert "| hold | 100 | 60 | 40 | 0 |" in load_report.markdown(results)
