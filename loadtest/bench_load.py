"""`newsrec bench load`: the whole stack (API replica, feature updater, article ingestor, local Redis + broker, the
simulator feeding the stream) under headless Locust: a short ramp finds the capacity C, then a breaking-news surge
at 5x C; the server's /metrics scraped every second. The optimized build and the naive baseline in the same run."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtest.load_report import RECOMMEND, RECOMMEND_SHED
from loadtest.stream_stack import StackConfig, StreamStack

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
# naive: what serving is without our work (torch eager, candidate features from Redis per request, no admission)
SYSTEMS = {
    "optimized": {"env": {}, "args": ()},
    # the surge options (serving.settings) always on, not only while shedding; and never
    "optimized_off_loop": {"env": {"NEWSREC_OFF_LOOP_WHEN": "always"}, "args": ()},
    "optimized_on_loop": {"env": {"NEWSREC_MODEL_THREAD": "false", "NEWSREC_LOOP_TURNS": "false",
                                  "NEWSREC_SWITCH_INTERVAL_MS": "5"}, "args": ()},
    "naive": {"env": {"NEWSREC_ITEM_FEATURES_FROM_STORE": "true", "NEWSREC_ADMISSION__ENABLED": "false",
                      "NEWSREC_MICRO_BATCH_WAIT_MS": "0"}, "args": ("--backend", "torch")},
}


@dataclass(frozen=True)
class LoadConfig:
    world: Path
    registry: Path
    out: Path
    systems: tuple[str, ...] = ("optimized", "naive")
    user_rps: float = 5.0            # tasks per second per simulated reader
    ramp_start_users: int = 5
    ramp_step_users: int = 10
    ramp_step_s: float = 5.0
    ramp_max_users: int = 600
    surge_over_capacity: float = 5.0  # peak offered load / C
    surge_factor: float = 10.0        # peak users / base users
    surge_spans_s: tuple[float, float, float, float, float] = (10, 5, 20, 10, 5)  # warm, rise, hold, decay, tail
    # before them, at base load: Locust spawning the readers and opening their connections, a phase of its own
    # (its first answers wait for the generator's start-up: 150-190 ms at p99 as Locust timed them, 25 ms as
    # the canary did); the acceptance checks leave it out
    surge_start_s: float = 5.0
    surge_articles: int = 10
    simulator_eps: float = 50.0       # click stream replayed meanwhile (events/s)
    # The API replicas (one worker each) get their own CPUs, everything else (Locust, workers, broker, Redis, the
    # simulator) the rest: on 2 cores a 5x surge's load generator would otherwise take the server's CPU, and the
    # run would measure the generator. None: no pinning, `replicas` processes.
    serve_cpu_share: float | None = 0.5
    replicas: int = 1
    # The surge steers the number of readers so that the offered recommend load (admitted + shed) follows 5x C (a
    # fixed reader count offered 3x to 8x C). Its readers keep their pace after a 503 (the worst case for the
    # server): readers that wait Retry-After need ~4x the readers, i.e. greenlets, for the same offered load, and
    # Locust on one core could not offer more than ~3x C that way.
    surge_honor_retry_after: bool = False
    # Niceness of the stream's background processes (broker, workers, simulator) on the generator's CPUs. At 5x C
    # that CPU was 100% busy (broker 37%, Locust 35%, feature worker 20%, simulator + article worker 13%): Locust
    # then timed its own wait for the CPU into every answer. In production the generator is another machine; here
    # Locust and Redis (on the request path) go first and the stream, which may lag a few seconds, goes after.
    background_nice: int = 10
    canary_rps: float = 20.0          # loadtest.canary's requests through the surge (0: none)
    # The canary runs where a client's wait is the server's alone: on the API replica's CPUs, ahead of the server's
    # threads (niceness -15; needs root, else it keeps the default), ~0.2% of that core. On the generator's core,
    # 100% busy, it timed 1-3 ms of its own waits into every answer (one server build: shed p50 3.4-3.7 vs 2.5 ms).
    canary_nice: int = -15
    canary_on_serve_cpus: bool = True


class MetricsScraper(threading.Thread):
    """Every `every_s`, reads each target's /metrics: counters summed by sample name (+ labels where asked), and
    over the target's processes (the API replicas are one target)."""

    def __init__(self, targets: dict[str, list[str]], every_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.targets, self.every_s, self.samples, self._stop_evt = targets, every_s, [], threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=2.0) as http:
            while not self._stop_evt.is_set():
                row: dict = {"t": time.time()}
                for name, urls in self.targets.items():
                    try:
                        pages = [parse_metrics(http.get(f"{url}/metrics").text) for url in urls]
                    except httpx.HTTPError:
                        row[name] = None  # a scrape missed under load: a gap, not a zero
                        continue
                    row[name] = {k: sum(p.get(k, 0.0) for p in pages) for k in {k for p in pages for k in p}}
                self.samples.append(row)
                self._stop_evt.wait(self.every_s)

    def stop(self) -> list[dict]:
        self._stop_evt.set()
        self.join(timeout=5)
        return self.samples


def parse_metrics(text: str) -> dict[str, float]:
    """The figures the report needs from a Prometheus text page: totals, stage sums/counts, consumer lag."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("newsrec_shed_total", "newsrec_degraded_total", "newsrec_stream_consumer_lag"):
                key = s.name
            elif s.name in ("newsrec_stage_seconds_sum", "newsrec_stage_seconds_count"):
                key = f"{s.name}:{s.labels.get('stage')}"
            elif s.name == "newsrec_event_loop_lag_seconds_bucket":
                key = f"{s.name}:{s.labels.get('le')}"
            elif s.name == "newsrec_recommend_source_total":
                key = f"{s.name}:{s.labels.get('source')}"
            else:
                continue
            out[key] = out.get(key, 0.0) + s.value
    return out


def locust_run(host: str, world: Path, shape: str, params: dict, user_rps: float, prefix: Path,
               timeout_s: float, honor_retry_after: bool = True, more_hosts: tuple[str, ...] = ()) -> dict:
    """One headless Locust run with a shape from loadtest/shapes.py; its phase JSON and per-second history."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSREC_")}
    env |= {f"NEWSREC_SHAPE_{k}": str(v) for k, v in params.items()}
    env |= {"NEWSREC_SHAPE": shape, "NEWSREC_SHAPE_OUT": f"{prefix}.json", "NEWSREC_LOCUST_WORLD": str(world),
            "NEWSREC_LOCUST_USER_RPS": str(user_rps),
            "NEWSREC_LOCUST_HONOR_RETRY_AFTER": str(int(honor_retry_after)),
            "NEWSREC_LOCUST_REPLICAS": ",".join(more_hosts)}
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
                           "--csv", str(prefix), "--csv-full-history", "--only-summary", "--loglevel", "WARNING"],
                          env=env, capture_output=True, text=True, timeout=timeout_s)
    (prefix.parent / f"{prefix.name}.log").write_text(proc.stdout[-20000:] + proc.stderr[-20000:])
    report = json.loads(Path(f"{prefix}.json").read_text())
    report["started_at"] = started
    report["history"] = history(Path(f"{prefix}_stats_history.csv"))
    failures = Path(f"{prefix}_failures.csv")
    report["failure_kinds"] = list(csv.DictReader(failures.open())) if failures.exists() else []
    return report


def history(path: Path) -> list[dict]:
    """Locust's per-second rows folded into one row per second: users, cumulative counts per request name, and
    the admitted /v1/recommend current p50/p99 and shed p99 (Locust's 10 s window)."""
    rows: dict[int, dict] = {}
    for r in csv.DictReader(path.open()):
        t = int(r["Timestamp"])
        row = rows.setdefault(t, {"t": float(t), "users": int(r["User Count"]), "counts": {}, "failures": 0})
        if r["Name"] == "Aggregated":
            row["failures"] = int(r["Total Failure Count"])
            continue
        row["counts"][r["Name"]] = int(r["Total Request Count"])
        if r["Name"] in (RECOMMEND, RECOMMEND_SHED):
            tag = "shed" if r["Name"] == RECOMMEND_SHED else "recommend"
            for q in ("50%", "99%"):
                v = r[q]
                row[f"{tag}_p{q[:-1]}_ms"] = float(v) if v not in ("N/A", "", "0") else None
    return [rows[t] for t in sorted(rows)]


def capacity_step(ramp: dict) -> tuple[float, float]:
    """(C, admitted recommend answers per second per reader at the step that gave C) from a Ramp report."""
    c = float(ramp.get("capacity_rps") or 0.0)
    steps = [p for p in ramp["phases"] if p.get("users")]
    best = max(steps, key=lambda p: p["goodput_rps"] if abs(p["goodput_rps"] - c) < 1e-6 else -1, default=None)
    if best is None or c <= 0:  # nothing within the SLO: judge by the best goodput seen
        best = max(steps, key=lambda p: p["goodput_rps"])
        c = best["goodput_rps"]
    return c, best["goodput_rps"] / max(best["users"], 1)


def split_cpus(share: float | None, cpus: set[int]) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """(the replicas' CPUs, everyone else's) from the CPUs this process may use; (None, None): no pinning."""
    if share is None or len(cpus) < 2:
        return None, None
    ordered = sorted(cpus)
    n = min(max(1, round(share * len(ordered))), len(ordered) - 1)
    return frozenset(ordered[:n]), frozenset(ordered[n:])


def deprioritize(pids: list[int], nice: int) -> None:
    """Lower these processes' CPU priority (a nice value, 0 = unchanged); a process already gone is skipped."""
    for pid in pids if nice else ():
        try:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        except ProcessLookupError:
            pass


def start_canary(host: str, cfg: LoadConfig, out: Path, seconds: float, cpus: frozenset[int] | None = None
                 ) -> tuple[subprocess.Popen, Path] | None:
    """loadtest.canary in its own process, from now for `seconds`: on `cpus` (None: this process's) at niceness
    cfg.canary_nice."""
    if cfg.canary_rps <= 0:
        return None
    path = out / "canary.json"
    proc = subprocess.Popen([sys.executable, "-m", "loadtest.canary", host, str(cfg.world), "--rps",
                             str(cfg.canary_rps), "--seconds", str(seconds), "--out", str(path)],
                            stdout=subprocess.DEVNULL, stderr=(out / "canary.log").open("wb"))
    if cpus:
        os.sched_setaffinity(proc.pid, cpus)
    try:
        deprioritize([proc.pid], cfg.canary_nice)
    except PermissionError:  # a negative niceness needs root: the canary then runs at Locust's priority
        pass
    return proc, path


def finish_canary(canary: tuple[subprocess.Popen, Path] | None, phases: list[dict]) -> dict | None:
    """Wait for the canary; its figures per phase of the surge (None when it did not run or failed)."""
    if canary is None:
        return None
    from loadtest.canary import phase_figures

    proc, path = canary
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None
    if proc.returncode != 0 or not path.exists():
        return None
    data = json.loads(path.read_text())
    return {"rps": data["rps"], "phases": phase_figures(data["records"], phases)}


def run_system(name: str, cfg: LoadConfig, endpoints, log: list[str],
               serve_cpus: frozenset[int] | None = None, background_pids: tuple[int, ...] = ()) -> dict:
    spec, out = SYSTEMS[name], cfg.out / name
    out.mkdir(parents=True, exist_ok=True)
    stack_cfg = StackConfig(cfg.world, cfg.registry, endpoints.redis_url, endpoints.kafka_bootstrap, "load",
                            out / "logs", replicas=len(serve_cpus) if serve_cpus else cfg.replicas,
                            features_worker=True, serve_env=spec["env"], serve_args=spec["args"], serve_cpus=serve_cpus)
    result: dict = {"system": name, "serve_env": spec["env"], "serve_args": list(spec["args"])}
    with StreamStack(stack_cfg) as stack:
        host = stack.replicas[0]
        sim_log = (out / "simulate.log").open("wb")
        sim = subprocess.Popen([sys.executable, "-m", "newsrec.cli", "simulate", "--world", str(cfg.world),
                                "--rate", str(cfg.simulator_eps), "--speedup", "0", "--duration", "3600",
                                "--world-end-clock", "--bootstrap", endpoints.kafka_bootstrap,
                                "--topic-prefix", "load-"], stdout=sim_log, stderr=subprocess.STDOUT)
        deprioritize([*background_pids, *(p.pid for p in stack.worker_procs.values()), sim.pid], cfg.background_nice)
        scraper = MetricsScraper({"serve": stack.replicas, **{f"worker-{k}": [u] for k, u in stack.workers.items()}})
        scraper.start()
        try:
            ramp = locust_run(host, cfg.world, "ramp", {
                "START_USERS": cfg.ramp_start_users, "STEP_USERS": cfg.ramp_step_users, "STEP_S": cfg.ramp_step_s,
                "MAX_USERS": cfg.ramp_max_users}, cfg.user_rps, out / "ramp", timeout_s=300,
                more_hosts=tuple(stack.replicas[1:]))
            c, per_user = capacity_step(ramp)
            log.append(f"{name}: C = {c:.1f} admitted recommend/s ({per_user:.2f}/s per reader)")
            peak_users = max(2, round(cfg.surge_over_capacity * c / max(per_user, 1e-6)))
            base_users = max(1, round(peak_users / cfg.surge_factor))
            warm, rise, hold, decay, tail = cfg.surge_spans_s
            canary = start_canary(host, cfg, out, seconds=cfg.surge_start_s + sum(cfg.surge_spans_s) + 8,
                                  cpus=serve_cpus if cfg.canary_on_serve_cpus else None)
            surge = locust_run(host, cfg.world, "surge", {
                "USERS": base_users, "FACTOR": cfg.surge_factor, "WARM_S": warm, "RISE_S": rise,
                "HOLD_S": hold, "DECAY_S": decay, "TAIL_S": tail, "START_S": cfg.surge_start_s,
                "ARTICLES": cfg.surge_articles,
                "TARGET_RPS": cfg.surge_over_capacity * c / cfg.surge_factor,
                "MAX_USERS": 3 * peak_users},  # a generator that cannot keep up must not be fed ever more readers
                cfg.user_rps, out / "surge", timeout_s=cfg.surge_start_s + sum(cfg.surge_spans_s) + 120,
                honor_retry_after=cfg.surge_honor_retry_after, more_hosts=tuple(stack.replicas[1:]))
            surge["spans_s"] = [cfg.surge_start_s, *cfg.surge_spans_s]  # start, warm, rise, hold, decay, tail
            surge["canary"] = finish_canary(canary, surge["phases"])
            if surge["canary"] is not None:
                surge["canary"]["where"] = (f"on the API replica's CPUs at niceness {cfg.canary_nice}"
                                            if cfg.canary_on_serve_cpus and serve_cpus else
                                            f"beside Locust at niceness {cfg.canary_nice}")
        finally:
            result["metrics"] = scraper.stop()
            sim.terminate()
            try:
                sim.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sim.kill()
            sim_log.close()
    result |= {"capacity_rps": c, "recommend_per_reader_rps": per_user, "ramp": ramp, "surge": surge,
               "surge_users": {"base": base_users, "peak": surge.get("peak_users", peak_users)}}
    return result


def run(cfg: LoadConfig, command: str = "") -> dict:
    from feature_store.materialize import materialize_world
    from loadtest import load_report
    from newsrec.services import LocalServices

    cfg.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"config": {k: str(v) for k, v in asdict(cfg).items()}, "command": command,
                     "cpus": os.cpu_count(), "systems": {}, "log": []}
    allowed = os.sched_getaffinity(0)
    serve_cpus, other_cpus = split_cpus(cfg.serve_cpu_share, allowed)
    results["cpu_split"] = {"serve": sorted(serve_cpus or allowed), "others": sorted(other_cpus or allowed)}
    try:
        if other_cpus:  # inherited by every process started from here on: Redis, the broker, workers, Locust
            os.sched_setaffinity(0, other_cpus)
        for name in cfg.systems:  # a fresh Redis and broker per system: neither inherits the other's state
            services = LocalServices((cfg.out / name / "services").resolve())
            with services as endpoints:
                materialize_world(cfg.world, endpoints.redis_url, "load")
                broker = tuple(p.pid for n, p in services.processes.items() if n == "kafka")
                results["systems"][name] = run_system(name, cfg, endpoints, results["log"], serve_cpus, broker)
    finally:
        os.sched_setaffinity(0, allowed)
    load_report.write(results, cfg.out)
    return results
