"""loadtest.canary against a real uvicorn on 127.0.0.1: every request it sent comes back as (wall-clock send time,
status, latency), sheds (503) apart from answers, and `phase_figures` cuts them by wall-clock phases."""
from __future__ import annotations

import itertools
import json
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from loadtest.canary import main, phase_figures
from newsrec.services import free_port


def test_the_canary_times_every_request_and_cuts_them_by_phase(tmp_path):
    counter = itertools.count()

    async def recommend(request):
        if next(counter) % 4 == 3:
            return JSONResponse({"error": "overloaded"}, status_code=503)
        return JSONResponse({"items": [], "source": "ranked"})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/v1/recommend", recommend)]), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    world = tmp_path / "world"
    (world / "train").mkdir(parents=True)
    (world / "train" / "behaviors.tsv").write_text("1\tU1\t11/9/2019 8:00:00 AM\t\tN1-0\n"
                                                   "2\tU2\t11/9/2019 8:01:00 AM\t\tN1-1\n")
    out = tmp_path / "canary.json"
    started = time.time()
    try:
        main([f"http://127.0.0.1:{port}", str(world), "--rps", "40", "--seconds", "1.5", "--out", str(out)])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    records = json.loads(out.read_text())["records"]
    assert 40 <= len(records) <= 80                       # Poisson at 40/s for 1.5 s
    bad = [(t - started, ms) for t, _, ms in records if not (started - 1 <= t <= time.time() and ms > 0)]
    assert not bad, bad[:5]
    assert {s for _, s, _ in records} == {200, 503}
    half = records[len(records) // 2][0]
    phases = [{"phase": "a", "start_s": started - 1, "seconds": half - started + 1},
              {"phase": "b", "start_s": half, "seconds": 60}]
    a, b = phase_figures(records, phases)
    assert a["requests"] + b["requests"] == len(records) and a["errors"] == b["errors"] == 0
    assert a["shed"] + b["shed"] == sum(s == 503 for _, s, _ in records) and b["admitted_p99_ms"] > 0
