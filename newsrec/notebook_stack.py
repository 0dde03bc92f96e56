"""What the demo notebooks (notebooks/) stand on: the world of a preset, a trained model and the running stack, built
with the code `newsrec demo`, `newsrec train` and the freshness benchmark use, kept under var/ (or $NEWSREC_VAR_DIR);
every process is stopped by PID."""
from __future__ import annotations

import atexit
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from newsrec.services import LocalServices, ServiceEndpoints

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PRESET = "small"  # the demo's; the notebook tests set NEWSREC_PRESET=tiny


def preset_name() -> str:
    return os.environ.get("NEWSREC_PRESET") or DEFAULT_PRESET


def var_dir() -> Path:
    """$NEWSREC_VAR_DIR (the notebook tests point it at a temporary directory), else <repo>/var (git-ignored)."""
    return Path(os.environ["NEWSREC_VAR_DIR"]) if os.environ.get("NEWSREC_VAR_DIR") else REPO / "var"


def state_dir(preset: str) -> Path:
    """Where the notebooks of a preset keep their registry, services and results."""
    return var_dir() / "notebooks" / preset


def ensure_world(preset: str) -> Path:
    """var/worlds/<preset>, written (once per config) the way `newsrec demo` writes it."""
    from data.synth import preset as get_preset
    from data.synth import is_written, write_world

    world = var_dir() / "worlds" / preset
    if not is_written(get_preset(preset), world):  # missing, or written from an older config
        write_world(get_preset(preset), world)
    return world


def training_config(preset: str):
    """The TrainConfig the notebooks use: the default, except on tiny (6k impressions) where more, smaller ranker
    steps are needed — with 1 epoch each the model stays below popularity (AUC 0.56 vs 0.60 on tiny's dev split)."""
    from recsys.train import TrainConfig

    cfg = TrainConfig()
    if preset != "tiny":
        return cfg
    return replace(cfg, retrieval=replace(cfg.retrieval, epochs=3),
                   ranker=replace(cfg.ranker, epochs=8, batch_size=1024))


def ensure_model(preset: str) -> tuple[Path, Path]:
    """(world dir, registry dir) with a current model version, trained here if the registry has none."""
    from recsys.registry import ModelRegistry
    from recsys.train import train

    world, registry = ensure_world(preset), ModelRegistry(state_dir(preset) / "registry")
    if not registry.root.is_dir() or registry.current() is None:
        train(world, registry, training_config(preset))
    return world, registry.root


class ServingStack:
    """The whole online path on real processes: a local redis-server and broker (LocalServices), the world's log
    materialized into Redis, and loadtest.stream_stack's workers (features, articles) and `newsrec serve` replicas.

    `stop()` stops exactly these PIDs; it also runs at interpreter exit, so a notebook that fails half-way leaves
    nothing behind when its kernel shuts down.
    """

    def __init__(self, world: Path, registry: Path, state: Path, replicas: int = 1, prefix: str = "nb") -> None:
        self.world, self.registry, self.state = Path(world), Path(registry), Path(state)
        self.replicas, self.prefix = replicas, prefix
        self.services = LocalServices(self.state / "services", die_with_parent=True)
        self.endpoints: ServiceEndpoints | None = None
        self.materialized: dict = {}
        self.stream = None  # loadtest.stream_stack.StreamStack once started
        self._snapshot = self.state / "item-vectors.snapshot"

    def start(self) -> ServingStack:
        from feature_store.materialize import materialize_world
        from loadtest.stream_stack import StackConfig, StreamStack

        atexit.register(self.stop)
        try:
            self.endpoints = self.services.start()
            # the broker keeps topics in memory: a vector snapshot from an earlier broker names offsets this one
            # never had, and replicas starting from it would skip the new broker's first articles
            self._snapshot.unlink(missing_ok=True)
            # in a thread: a notebook kernel's main thread already runs an event loop, and this one runs its own
            with ThreadPoolExecutor(1) as pool:
                self.materialized = pool.submit(materialize_world, self.world, self.endpoints.redis_url,
                                                self.prefix).result()
            self.stream = StreamStack(StackConfig(
                world=self.world, registry=self.registry, redis_url=self.endpoints.redis_url,
                bootstrap=self.endpoints.kafka_bootstrap, prefix=self.prefix, log_dir=self.state / "logs",
                replicas=self.replicas, features_worker=True, snapshot=self._snapshot))
            self.stream.__enter__()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        """The first replica's base URL."""
        return self.stream.replicas[0]

    @property
    def pids(self) -> dict[str, int]:
        """What this stack runs: redis, kafka, "worker articles", "worker features", "serve 0", "serve 1", ..."""
        out = {name: rec.pid for name, rec in self.services.processes.items()}
        replicas = 0
        for proc in self.stream.procs if self.stream is not None else ():
            command = proc.args[3:5] if proc.args[3] == "worker" else [proc.args[3], str(replicas)]
            replicas += proc.args[3] != "worker"
            out[" ".join(command)] = proc.pid  # args: python -m newsrec.cli worker <kind> ... | serve ...
        return out

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop()
            self.stream = None
        self.services.stop()

    def __enter__(self) -> ServingStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
