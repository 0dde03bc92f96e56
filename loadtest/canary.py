"""A canary beside a load test: a few open-loop recommend requests a second from their own light process, timed
from their scheduled send, so what a client waits for is measured apart from the load generator's own CPU waits.

`newsrec bench load` runs it through a surge (`python -m loadtest.canary URL WORLD --rps R --seconds S --out F`) and
cuts its requests by the surge's phases (`phase_figures`). Locust, with hundreds of readers on a core shared with
the broker and the workers, also times how long its own loop took to get back to each reader.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from loadtest.openloop import run_timeline
from loadtest.readers import load_readers

SHED_STATUS = 503


def draw_users(world: Path, n: int, seed: int = 0) -> list[str]:
    """n reader ids with the world's activity skew (and its share of unknown readers), as Locust draws them."""
    readers, rng = load_readers(world), random.Random(seed)
    return [readers.draw(rng) for _ in range(n)]


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def phase_figures(records: list[list[float]], phases: list[dict]) -> list[dict]:
    """Per phase (each with `phase`, `start_s` wall clock and `seconds`): the canary's requests sent in it,
    admitted (200) p50/p99, shed (503) p50/p99 and anything else (errors), all in ms."""
    out = []
    for p in phases:
        lo, hi = p["start_s"], p["start_s"] + p["seconds"]
        inside = [(status, ms) for t, status, ms in records if lo <= t < hi]
        ok = [ms for status, ms in inside if status == 200]
        shed = [ms for status, ms in inside if status == SHED_STATUS]
        out.append({"phase": p["phase"], "start_s": lo, "seconds": p["seconds"], "requests": len(inside),
                    "admitted": len(ok), "shed": len(shed),
                    "errors": len(inside) - len(ok) - len(shed), "admitted_p50_ms": _pct(ok, 50),
                    "admitted_p99_ms": _pct(ok, 99), "shed_p50_ms": _pct(shed, 50), "shed_p99_ms": _pct(shed, 99)})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("world", type=Path)
    ap.add_argument("--rps", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    users = draw_users(a.world, max(1, int(a.rps * a.seconds)), a.seed)
    records = run_timeline(a.url, users, a.rps, a.seconds, a.seed)
    a.out.write_text(json.dumps({"rps": a.rps, "records": [[round(t, 4), s, round(ms, 3)] for t, s, ms in records]}))


if __name__ == "__main__":
    main()
