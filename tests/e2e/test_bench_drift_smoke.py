"""`newsrec bench drift` end to end on the tiny world, CI-sized: the real stack (3 replicas, feature updater, online
trainer, local Redis and broker) through the interest shift and the breaking event at a high speed-up. Checks the
outputs and that each of the three systems has a curve; the targets live in the full run's results, not here."""
from __future__ import annotations

import json
import subprocess
import sys

from data.synth import preset, write_world


def test_bench_drift_writes_three_curves_and_a_plot(tmp_path):
    write_world(preset("tiny"), tmp_path / "world")
    out = tmp_path / "bench"
    # the interest shift only (the tiny world's breaking news is 8 h earlier: a second window, a second stack);
    # pre 60 min at 200x: a stack that starts up to 18 s after its 60 s margin (a busy CI box) still leaves
    # pre-event instants. Tiny's 14:00 peak has ~3 readers a minute: 5-minute instants ask ~10 of them.
    cmd = [sys.executable, "-m", "newsrec.cli", "bench", "drift", "--world", str(tmp_path / "world"), "--out",
           str(out), "--speedup", "200", "--pre-min", "60", "--post-min", "60", "--step-min", "5", "--readers", "12",
           "--events", "interest_shift", "--start-margin", "60", "--ranker-epochs", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "online beats both frozen systems" in done.stdout
    results = json.loads((out / "bench_drift.json").read_text())
    assert (out / "bench_drift.png").stat().st_size > 10_000
    (window,) = results["windows"]
    assert [e["name"] for e in window["events"]] == ["interest_shift"]
    for system in ("online", "features_streamed", "frozen"):
        points = [p for p in window["points"] if p["system"] == system]
        asked = [p for p in points if p["readers"]]
        assert len(points) >= 8 and len(asked) >= 0.8 * len(points), system
        assert all(p["errors"] == 0 and p["readers"] <= 12 for p in points), system
        assert all(0.0 < p["ndcg10"] <= 1.0 and 0.0 < p["ctr"] < 1.0 for p in asked), system
        assert window["summary"]["interest_shift"][system]["measured"]
    ceiling = [p for p in window["points"] if p["system"] == results["ceiling"] and p["readers"]]
    assert ceiling and all(0.0 < p["ndcg10"] <= 1.0 + 1e-9 for p in ceiling)  # the best any system could serve
    assert window["summary"]["interest_shift"][results["ceiling"]]["pre_ndcg10"] > 0.999
    assert window["replay"]["sent"]["impressions"] > 0 and window["trainer"]["labelled_impressions"] > 0
    assert window["exit_codes"]["trainer"] == 0 and window["exit_codes"]["features"] == 0  # SIGTERM: clean exit
