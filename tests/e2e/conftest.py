"""E2E fixtures: the running stack as real processes on 127.0.0.1 (loadtest.stream_stack: `newsrec serve`,
`newsrec worker features`, `newsrec worker articles`) against the session's Redis and broker, over the tiny trained
world materialized under a prefix of its own; processes stopped by PID and the prefix's keys deleted after."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from feature_store.materialize import materialize_world
from loadtest.stream_stack import StackConfig, StreamStack


@pytest.fixture(scope="module")
def stack(services, tiny_trained, tmp_path_factory) -> Iterator[StreamStack]:
    """One API replica (`stack.replicas[0]`) + the feature and article workers, all ready when yielded;
    `stack.cfg.prefix` is the Redis key prefix (topics: "<prefix>-...")."""
    world, registry = tiny_trained
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    materialize_world(world, services.redis_url, prefix)
    cfg = StackConfig(world=world, registry=registry, redis_url=services.redis_url, bootstrap=services.kafka_bootstrap,
                      prefix=prefix, log_dir=tmp_path_factory.mktemp("stack"), replicas=1, features_worker=True)
    try:
        with StreamStack(cfg) as running:
            yield running
    finally:
        client = redis.Redis.from_url(services.redis_url)
        client.unlink(*client.scan_iter(match=f"{prefix}:*", count=1000))  # the tiny world: a few thousand keys
        client.close()
