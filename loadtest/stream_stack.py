"""The stream path as real processes on one machine, for the freshness benchmark and the integration tests:
`newsrec worker articles` (+ `newsrec worker features` when asked) and N `newsrec serve` replicas that follow the
stream, over given Redis and broker endpoints. Every process is started here and stopped by its PID."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from recsys.catalogue import load_catalogue
from streaming.settings import StreamSettings, Topics
from streaming.topics import ensure_topics

READY_TIMEOUT_S = 120.0


def wait_ready(name: str, proc: subprocess.Popen, url: str, log_path: Path, timeout_s: float = READY_TIMEOUT_S
               ) -> None:
    """Poll `url`/readyz until 200; raises with the log's tail if the process exits first or never gets ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready after {timeout_s:.0f} s (log: {log_path})")


@dataclass
class StackConfig:
    world: Path
    registry: Path
    redis_url: str
    bootstrap: str
    prefix: str                      # Redis keys and topics (topic names get "<prefix>-")
    log_dir: Path
    replicas: int = 2
    features_worker: bool = False    # also run the click/impression feature updater
    trainer_worker: bool = False     # also run the online trainer (fine-tunes and promotes ranker versions)
    snapshot: Path | None = None     # the item-vectors snapshot file (written by the article worker)
    snapshot_every_s: float = 30.0
    registry_poll_s: float | None = None   # replicas' registry polling (None: their default)
    serve_env: dict[str, str] = field(default_factory=dict)  # extra NEWSREC_* for the replicas (e.g. a baseline)
    serve_args: tuple[str, ...] = ()  # extra `newsrec serve` options (e.g. --backend torch)
    serve_cpus: frozenset[int] | None = None  # pin the replicas to these CPUs (a load test keeps its generator off)


@dataclass
class StreamStack:
    """Start with `with StreamStack(cfg) as stack:`; `stack.replicas` are base URLs, `stack.now()` the shared
    world clock (every replica gets the same explicit clock offset, so they agree on what is live)."""

    cfg: StackConfig
    replicas: list[str] = field(default_factory=list)
    workers: dict[str, str] = field(default_factory=dict)  # kind -> metrics base URL
    procs: list[subprocess.Popen] = field(default_factory=list)
    worker_procs: dict[str, subprocess.Popen] = field(default_factory=dict)  # kind -> process
    clock_offset_s: float = 0.0

    @property
    def stream(self) -> StreamSettings:
        return StreamSettings(bootstrap_servers=self.cfg.bootstrap, topics=Topics(prefix=f"{self.cfg.prefix}-"),
                              vector_snapshot=self.cfg.snapshot)

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSREC_")}
        env |= {"NEWSREC_STREAM__BOOTSTRAP_SERVERS": self.cfg.bootstrap,
                "NEWSREC_STREAM__TOPICS__PREFIX": f"{self.cfg.prefix}-",
                "NEWSREC_CLOCK_OFFSET_S": str(self.clock_offset_s),
                "NEWSREC_LOG_JSON": "false", "OMP_NUM_THREADS": "1"}
        if self.cfg.registry_poll_s is not None:
            env["NEWSREC_REGISTRY_POLL_S"] = str(self.cfg.registry_poll_s)
        if self.cfg.snapshot is not None:
            env["NEWSREC_STREAM__VECTOR_SNAPSHOT"] = str(self.cfg.snapshot)
            env["NEWSREC_SNAPSHOT_EVERY_S"] = str(self.cfg.snapshot_every_s)
        return env

    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None,
               cpus: frozenset[int] | None = None) -> subprocess.Popen:
        self.cfg.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.cfg.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "newsrec.cli", *args], env=self._env() | (extra_env or {}),
                                    stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=None if cpus is None else (lambda: os.sched_setaffinity(0, cpus)))
        self.procs.append(proc)
        return proc

    def _wait_ready(self, name: str, proc: subprocess.Popen, url: str) -> None:
        wait_ready(name, proc, url, self.cfg.log_dir / f"{name}.log")

    def _worker(self, kind: str) -> tuple[str, subprocess.Popen, str]:
        from newsrec.services import free_port

        port, c = free_port(), self.cfg
        args = ["worker", kind, "--bootstrap-servers", c.bootstrap, "--redis-url", c.redis_url, "--prefix", c.prefix,
                "--topic-prefix", f"{c.prefix}-", "--registry", str(c.registry), "--metrics-port", str(port),
                "--log-level", "warning"]
        if kind == "articles" and c.snapshot is not None:
            args += ["--snapshot", str(c.snapshot)]
        if kind == "trainer":
            args += ["--catalogue", str(c.world)]
        return f"worker-{kind}", self._spawn(f"worker-{kind}", args), f"http://127.0.0.1:{port}"

    def _replica(self, i: int) -> tuple[str, subprocess.Popen, str]:
        from newsrec.services import free_port

        port, c = free_port(), self.cfg
        proc = self._spawn(f"serve-{i}", ["serve", "--catalogue", str(c.world), "--registry", str(c.registry),
                                          "--redis-url", c.redis_url, "--prefix", c.prefix, "--port", str(port),
                                          *c.serve_args], c.serve_env, c.serve_cpus)
        return f"serve-{i}", proc, f"http://127.0.0.1:{port}"

    def start_replicas(self, n: int) -> list[str]:
        """Start n more `newsrec serve` processes at once (they load in parallel) and wait until all are ready."""
        started = [self._replica(len(self.replicas) + i) for i in range(n)]
        for name, proc, url in started:
            self._wait_ready(name, proc, url)
        self.replicas += [url for _, _, url in started]
        return [url for _, _, url in started]

    def __enter__(self) -> StreamStack:
        # the demo world lives in the past: run every replica's clock at its end, all with the same offset
        self.clock_offset_s = float(load_catalogue(self.cfg.world).publish_s.max()) - time.time()
        try:
            ensure_topics(self.stream)
            workers = [self._worker("articles")] + ([self._worker("features")] if self.cfg.features_worker else []) \
                + ([self._worker("trainer")] if self.cfg.trainer_worker else [])
            replicas = [self._replica(i) for i in range(self.cfg.replicas)]  # all load in parallel
            for name, proc, url in workers + replicas:
                self._wait_ready(name, proc, url)
            self.replicas = [url for _, _, url in replicas]
            self.workers = {name.removeprefix("worker-"): url for name, _, url in workers}
            self.worker_procs = {name.removeprefix("worker-"): proc for name, proc, _ in workers}
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM each process we started (by PID), then SIGKILL whatever is still running after 20 s."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
