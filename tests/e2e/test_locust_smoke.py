"""A short headless Locust run (~30 s) against the running stack: readers from the tiny world open feeds, click,
refresh and post impressions through a small breaking-news surge with a burst of new articles; no failures."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"
SURGE = {"USERS": 4, "FACTOR": 3, "WARM_S": 8, "RISE_S": 6, "HOLD_S": 8, "DECAY_S": 6, "TAIL_S": 2, "ARTICLES": 3}


def test_a_short_surge_runs_without_failures(stack, tiny_trained, tmp_path):
    world, _ = tiny_trained
    host = stack.replicas[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSREC_")}
    env |= {f"NEWSREC_SHAPE_{k}": str(v) for k, v in SURGE.items()}
    env |= {"NEWSREC_SHAPE": "surge", "NEWSREC_SHAPE_OUT": str(tmp_path / "surge.json"),
            "NEWSREC_LOCUST_WORLD": str(world), "NEWSREC_LOCUST_USER_RPS": "2"}
    run = subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
                          "--csv", str(tmp_path / "smoke"), "--only-summary", "--loglevel", "WARNING"],
                         env=env, capture_output=True, text=True, timeout=120)
    rows = {r["Name"]: r for r in csv.DictReader((tmp_path / "smoke_stats.csv").open())}
    failures = (tmp_path / "smoke_failures.csv").read_text()
    assert int(rows["Aggregated"]["Failure Count"]) == 0, failures + run.stderr[-2000:]
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(rows["/v1/recommend"]["Request Count"]) >= 50
    assert int(rows["/v1/events"]["Request Count"]) >= 50
    assert int(rows["/v1/articles"]["Request Count"]) == SURGE["ARTICLES"]  # the burst, all accepted (202)

    report = json.loads((tmp_path / "surge.json").read_text())
    assert [p["phase"] for p in report["phases"]] == ["warm", "rise", "hold", "decay", "tail"]
    assert all(p["failures"] == 0 and p["goodput_rps"] > 0 for p in report["phases"])
    hold, warm = report["phases"][2], report["phases"][0]
    assert hold["goodput_rps"] + hold["shed_rps"] > 1.5 * warm["goodput_rps"]  # the surge did raise the load

    metrics = httpx.get(f"{host}/metrics", timeout=5).text
    assert 'newsrec_shed_total{reason="overloaded"}' in metrics and "newsrec_in_flight_requests" in metrics
