"""Real client calls against the local or configured services: readiness probes and topic creation.

Used by newsrec.services (startup) and by anything that needs its Kafka topics to exist (Tansu never auto-creates).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterable

import redis
from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError, for_code

from newsrec import service_process
from newsrec.service_process import ServiceError, ServiceStartError

Started = tuple[subprocess.Popen, str]  # a service we launched: its process handle and its log file

# Measured against Tansu 0.6 here: a group joins in ~3 s with these (~23 s with kafka-python's defaults).
CONSUMER_GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 10000}


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1, replication: int = 1) -> None:
    """Create topics if missing (Tansu does not auto-create) and wait until each has a leader. Idempotent."""
    names = list(names)
    if not names:
        return
    spec = {name: {"num_partitions": partitions, "replication_factor": replication} for name in names}
    with KafkaAdminClient(bootstrap_servers=bootstrap, client_id="newsrec-admin") as admin:
        response = admin.create_topics(spec, raise_errors=False)
        for topic in response["topics"]:
            error = for_code(topic["error_code"])
            if topic["error_code"] != 0 and error is not TopicAlreadyExistsError:
                raise ServiceError(f"cannot create topic {topic['name']!r}: {error.__name__}")
        admin.wait_for_topics(names)


def wait_for_redis(url: str, timeout_s: float, started: Started | None = None) -> None:
    """PING until it answers PONG; raises ServiceStartError with the log tail if it never does or exits early.

    started: (the Popen, its log path) when we launched it ourselves; None for a service named by the environment.
    """
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        _wait_until(lambda: client.ping(), f"redis at {url}", timeout_s, started)
    finally:
        client.close()


def wait_for_kafka(bootstrap: str, timeout_s: float, started: Started | None = None) -> None:
    """A real metadata request (list topics) through kafka-python; same failure contract as wait_for_redis."""

    def metadata() -> object:
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        # A plain TCP connect first: kafka-python logs loudly on every refused connection.
        socket.create_connection((host, int(port)), timeout=1.0).close()
        with KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=2000, request_timeout_ms=2000) as a:
            return a.list_topics()

    _wait_until(metadata, f"kafka broker at {bootstrap}", timeout_s, started)


def _wait_until(probe: Callable[[], object], what: str, timeout_s: float, started: Started | None) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        # The Popen, not /proc, tells whether our child exited: its PID is ours until we wait for it.
        if started is not None and (code := started[0].poll()) is not None:
            raise ServiceStartError(_failure(f"{what} exited during startup with status {code}", started))
        try:
            probe()
            return
        except Exception as exc:  # any failure to answer means "not ready yet" until the deadline
            last_error = exc
        time.sleep(0.1)
    reason = f"{type(last_error).__name__}: {last_error}" if last_error else "no attempt finished"
    raise ServiceStartError(_failure(f"{what} did not answer within {timeout_s:.0f} s ({reason})", started))


def _failure(headline: str, started: Started | None) -> str:
    if started is None:
        return f"{headline}; it is configured in the environment: fix it, or unset it to start a local one"
    log_path = started[1]
    tail = service_process.log_tail(log_path) or "(empty log)"
    return f"{headline}\n--- last lines of {log_path} ---\n{tail}"
