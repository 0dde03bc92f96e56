"""Load shapes on a fake clock over real Locust stats: the surge's curve and its one article burst, the ramp's
capacity and breaking point (with patience for one noisy step), per-phase figures, shape selection by env."""
from __future__ import annotations

import json
import os
import types

import pytest

# Locust gevent-patches the whole process on import; these tests need only its pure parts (stats, shapes),
# so keep the test process unpatched (and do not leak the switch into processes started by later tests).
_before = os.environ.get("LOCUST_SKIP_MONKEY_PATCH")
os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
try:
    from locust.stats import RequestStats

    from loadtest import shapes
    from loadtest.stats_window import RECOMMEND, RECOMMEND_SHED, PhaseWindow
finally:
    if _before is None:
        del os.environ["LOCUST_SKIP_MONKEY_PATCH"]
    else:
        os.environ["LOCUST_SKIP_MONKEY_PATCH"] = _before


def attach(shape, stats: RequestStats) -> list[float]:
    """Give `shape` a runner with real stats and a clock the test moves: clock[0] = seconds since start."""
    clock = [0.0]
    shape.runner = types.SimpleNamespace(stats=stats, environment=types.SimpleNamespace(host="http://x"))
    shape.get_run_time = lambda: clock[0]
    return clock


def requests(stats: RequestStats, n: int, ms: int, name: str = RECOMMEND) -> None:
    for _ in range(n):
        stats.log_request("GET", name, ms, 100)


def test_the_surge_follows_its_curve_and_bursts_articles_once(tmp_path):
    s = shapes.Surge(base_users=10, factor=5, warm_s=10, rise_s=10, hold_s=10, decay_s=10, tail_s=5, articles=0,
                     out=tmp_path / "surge.json")
    assert [s.users_at(t) for t in (0, 15, 25, 35, 42)] == [("warm", 10), ("rise", 30), ("hold", 50),
                                                              ("decay", 30), ("tail", 10)]
    assert s.users_at(46) is None
    stats, bursts = RequestStats(), []
    s.on_surge_start = lambda: bursts.append(clock[0])
    clock = attach(s, stats)
    ticks = []
    for t in range(0, 47):
        clock[0] = float(t)
        requests(stats, 5, 10)
        ticks.append(s.tick())
    assert bursts == [10.0] and ticks[45:] == [None, None] and ticks[25] == (50, 50)
    report = json.loads((tmp_path / "surge.json").read_text())
    assert [p["phase"] for p in report["phases"]] == ["warm", "rise", "hold", "decay", "tail"]
    assert report["phases"][0]["goodput_rps"] == pytest.approx(5.0) and report["phases"][0]["seconds"] == 10


def test_a_surge_with_a_target_steers_readers_to_the_offered_load_whatever_each_one_sends(tmp_path):
    s = shapes.Surge(base_users=10, factor=5, warm_s=10, rise_s=5, hold_s=20, decay_s=5, tail_s=5, articles=0,
                     target_rps=100, out=tmp_path / "surge.json")
    stats = RequestStats()
    attach(s, stats)
    sent = stats.get(RECOMMEND, "GET").num_reqs_per_sec
    shed = stats.get(RECOMMEND_SHED, "GET").num_reqs_per_sec
    users, per_reader = s.base_users, 2.0
    for t in range(45):
        phase, multiple = s.curve_at(t)
        per_reader = 2.0 if phase in ("warm", "tail") else 3.5  # shed readers ask again: more requests each
        offered = users * per_reader
        sent[t], shed[t] = round(offered * 0.3), round(offered * 0.7)  # shed requests count as offered
        if t in (9, 34):
            assert abs(offered - 100 * multiple) / (100 * multiple) < 0.1, (t, offered)
        users = s.steer(multiple, now_s=t + 1)
    assert s.peak_users > 5 * 100 / 3.5 * 0.9


def test_steering_settles_when_readers_take_a_second_to_show_in_the_offered_load(tmp_path):
    """Readers spawn and pace over a second or two: the offered load lags the reader count. The hold must settle
    near the target instead of swinging (a controller that scaled readers by target / offered did: 3x swings)."""
    s = shapes.Surge(base_users=10, factor=5, warm_s=10, rise_s=5, hold_s=30, decay_s=5, tail_s=5, articles=0,
                     target_rps=100, out=tmp_path / "surge.json")
    stats = RequestStats()
    attach(s, stats)
    sent = stats.get(RECOMMEND, "GET").num_reqs_per_sec
    users, history = [s.base_users] * 2, []
    for t in range(55):
        phase, multiple = s.curve_at(t)
        per_reader = 2.0 if phase in ("warm", "tail") else 3.5
        sent[t] = round(users[-2] * per_reader)  # this second's load comes from the readers of a second ago
        users.append(s.steer(multiple, now_s=t + 1))
        history.append((phase, users[-1], sent[t]))
    hold = [(u, o) for phase, u, o in history[25:45]]  # the hold, 10 s after the rise ended
    assert max(u for u, _ in hold) / min(u for u, _ in hold) < 1.25, hold
    assert all(abs(o - 500) / 500 < 0.15 for _, o in hold), hold


def test_the_ramp_reports_capacity_and_stops_after_patience_bad_steps(tmp_path):
    ramp = shapes.Ramp(start_users=10, step_users=10, step_s=10, max_users=1_000, slo_p99_ms=100,
                       max_shed_share=0.01, patience=2, out=tmp_path / "ramp.json")
    stats = RequestStats()
    clock = attach(ramp, stats)
    # per step: (admitted per second, latency ms, sheds per second); step 2 is one noisy step, 5 and 6 break
    plan = [(10, 20, 0), (20, 30, 0), (30, 150, 0), (40, 40, 0), (50, 60, 0), (55, 90, 5), (55, 95, 9)]
    out = []
    for t in range(0, 10 * len(plan) + 1):
        clock[0] = float(t)
        out.append(ramp.tick())
        if out[-1] is None:
            break
        rps, ms, shed = plan[min(t // 10, len(plan) - 1)]
        requests(stats, rps, ms)
        requests(stats, shed, 1, RECOMMEND_SHED)
    assert out[0] == (10, 10) and out[15] == (20, 10)
    assert out[-1] is None and ramp.capacity_rps == pytest.approx(50.0) and ramp.break_users == 60
    report = json.loads((tmp_path / "ramp.json").read_text())
    assert report["capacity_rps"] == pytest.approx(50.0) and report["break_users"] == 60
    assert [p["users"] for p in report["phases"]] == [10, 20, 30, 40, 50, 60, 70]
    assert report["phases"][5]["shed_share"] == pytest.approx(5 / 60, abs=1e-3)


def test_a_phase_window_counts_only_its_own_requests():
    stats, clock = RequestStats(), [0.0]
    requests(stats, 50, 500)  # before the phase: must not count
    window = PhaseWindow(stats, clock=lambda: clock[0])
    window.begin("p")
    requests(stats, 97, 10)
    requests(stats, 2, 80)
    requests(stats, 1, 250)   # admitted, but later than the SLO: not an answer within it
    requests(stats, 25, 3, RECOMMEND_SHED)
    stats.log_request("POST", "/v1/events", 5, 10)
    stats.log_error("POST", "/v1/events", "HTTP 500")
    clock[0] = 5.0
    p = window.end(users=7)
    assert p["goodput_rps"] == 20 and p["within_slo_rps"] == 19.8
    assert p["recommend_p50_ms"] == 10 and p["recommend_p99_ms"] == 250
    assert p["shed_rps"] == 5 and p["shed_share"] == 0.2 and p["shed_p99_ms"] == 3
    assert p["failures"] == 1 and p["users"] == 7 and p["events_rps"] == 0.2
    with pytest.raises(RuntimeError):
        window.end()


def test_the_shape_is_chosen_by_env(monkeypatch):
    monkeypatch.delenv("NEWSREC_SHAPE", raising=False)
    assert shapes.shape_from_env() is None
    monkeypatch.setenv("NEWSREC_SHAPE", "Surge")
    assert shapes.shape_from_env() is shapes.Surge
    monkeypatch.setenv("NEWSREC_SHAPE_FACTOR", "7")
    assert shapes.Surge().factor == 7 and shapes.Surge(factor=3).factor == 3
    monkeypatch.setenv("NEWSREC_SHAPE", "spike")
    with pytest.raises(ValueError, match="steady, ramp, surge"):
        shapes.shape_from_env()


def test_a_ramp_stopped_from_outside_writes_what_it_measured(tmp_path):
    ramp = shapes.Ramp(start_users=5, step_users=5, step_s=10, out=tmp_path / "ramp.json")
    stats = RequestStats()
    clock = attach(ramp, stats)
    for t in range(0, 16):
        clock[0] = float(t)
        ramp.tick()
        requests(stats, 10, 20)
    ramp.stop()  # Ctrl-C in the middle of step 1
    ramp.stop()
    report = json.loads((tmp_path / "ramp.json").read_text())
    assert [(p["phase"], p["users"]) for p in report["phases"]] == [("step 0", 5), ("step 1", 10)]
    assert report["capacity_rps"] == pytest.approx(10.0) and report["break_users"] is None
