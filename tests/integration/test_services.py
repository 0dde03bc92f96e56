"""The local services against real redis-server and Tansu: readiness, a Kafka round trip, up/down, kill/restart."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from newsrec.services import (
    CONSUMER_GROUP_TIMEOUTS,
    LocalServices,
    ServiceEndpoints,
    ServiceError,
    ServiceStartError,
    create_topics,
    free_port,
    recorded_services,
    running_endpoints,
    start_services,
    state_file,
    stop_services,
)

pytestmark = pytest.mark.integration



def _local_only_env() -> dict[str, str]:
    """The environment without external service URLs, so LocalServices starts its own."""
    return {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")}


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_redis_answers_ping_and_set_get(redis_client: redis.Redis, unique_name: str) -> None:
    assert redis_client.ping() is True
    redis_client.set(f"{unique_name}:greeting", "hello", ex=60)
    assert redis_client.get(f"{unique_name}:greeting") == b"hello"


def test_topic_round_trip_through_a_consumer_group(services: ServiceEndpoints, unique_name: str) -> None:
    topic = unique_name
    create_topics(services.kafka_bootstrap, [topic], partitions=2)
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    sent = {f"user{i}".encode(): f"click{i}".encode() for i in range(5)}
    for key, value in sent.items():
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=10)
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=services.kafka_bootstrap,
        group_id=unique_name,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **CONSUMER_GROUP_TIMEOUTS,
    )
    try:
        received: dict[bytes, bytes] = {}
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.update((r.key, r.value) for r in records)
        assert received == sent
        consumer.commit()
        committed = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in (0, 1))
        assert committed == len(sent)
    finally:
        consumer.close()


def test_create_topics_is_idempotent(services: ServiceEndpoints, unique_name: str) -> None:
    names = [f"{unique_name}-a", f"{unique_name}-b"]
    create_topics(services.kafka_bootstrap, names, partitions=3)
    create_topics(services.kafka_bootstrap, names, partitions=3)  # already there: no error
    with KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap) as admin:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
    assert described == {names[0]: 3, names[1]: 3}


def test_up_then_down_leaves_no_process_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    try:
        endpoints = start_services(tmp_path)
        assert start_services(tmp_path) == endpoints  # `up` twice: same services, nothing new started
        assert running_endpoints(tmp_path) == endpoints
        recorded = recorded_services(tmp_path)
        pids = [record.pid for record, _ in recorded]
        assert sorted(record.name for record, _ in recorded) == ["kafka", "redis"]
        assert all(running for _, running in recorded) and all(_pid_exists(pid) for pid in pids)
        assert redis.Redis.from_url(endpoints.redis_url).ping()
    finally:
        stopped = stop_services(tmp_path)

    assert sorted(record.pid for record in stopped) == sorted(pids)
    assert not any(_pid_exists(pid) for pid in pids)
    assert not state_file(tmp_path).exists()
    assert running_endpoints(tmp_path) is None
    assert stop_services(tmp_path) == []  # `down` twice is harmless


def test_services_from_up_outlive_the_process_that_started_them(tmp_path: Path) -> None:
    repo_root = Path(__file__).resolve().parents[2]
    env = {**_local_only_env(), "PYTHONPATH": str(repo_root)}
    script = f"import pathlib, newsrec.services as s; s.start_services(pathlib.Path({str(tmp_path)!r}))"
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    try:
        endpoints = running_endpoints(tmp_path)
        assert endpoints is not None
        assert redis.Redis.from_url(endpoints.redis_url).ping()
    finally:
        stopped = stop_services(tmp_path)
    assert {record.name for record in stopped} == {"redis", "kafka"}


def test_kill_and_restart_keep_the_port(tmp_path: Path, unique_name: str) -> None:
    local = LocalServices(tmp_path, env=_local_only_env(), redis_appendonly=True, die_with_parent=True)
    endpoints = local.start()
    try:
        client = redis.Redis.from_url(endpoints.redis_url, socket_timeout=1)
        client.set(unique_name, "kept")
        redis_port = local.processes["redis"].port
        local.kill("redis")
        with pytest.raises(redis.ConnectionError):
            client.ping()
        assert local.restart("redis").port == redis_port
        assert client.get(unique_name) == b"kept"  # appendonly, fsync always: acknowledged writes survive a crash
        client.close()

        create_topics(endpoints.kafka_bootstrap, [unique_name])
        kafka_port = local.processes["kafka"].port
        local.kill("kafka")
        assert local.restart("kafka").port == kafka_port
        with KafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap) as admin:
            # memory:// storage: a restarted broker starts empty; fault tests must re-create their topics.
            assert unique_name not in admin.list_topics()
        create_topics(endpoints.kafka_bootstrap, [unique_name])
    finally:
        stopped = local.stop()
    assert {record.name for record in stopped} == {"redis", "kafka"}


def test_a_service_that_exits_early_fails_with_its_log(services: ServiceEndpoints, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**_local_only_env(), "KAFKA_BOOTSTRAP_SERVERS": services.kafka_bootstrap}
        with pytest.raises(ServiceStartError, match=r"(?s)exited during startup.*Address already in use"):
            LocalServices(tmp_path, env=env, redis_port=port).start()
    assert not state_file(tmp_path).exists()


def test_an_external_service_that_does_not_answer_fails_clearly(tmp_path: Path) -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    with pytest.raises(ServiceStartError, match="configured in the environment"):
        LocalServices(tmp_path, env=env, ready_timeout_s=1).start()


def test_start_refuses_a_state_dir_whose_services_still_run(tmp_path: Path) -> None:
    with LocalServices(tmp_path, env=_local_only_env(), die_with_parent=True):
        with pytest.raises(ServiceError, match="already running"):
            LocalServices(tmp_path, env=_local_only_env()).start()
