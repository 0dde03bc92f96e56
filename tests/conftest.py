"""Shared fixtures: the real services for the test session, a Redis client, per-test unique names.

`services` starts redis-server and the Tansu broker through newsrec.services.LocalServices (the code `newsrec up`
uses), or uses REDIS_URL / KAFKA_BOOTSTRAP_SERVERS when set. A service that cannot start fails the run; never skips.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import redis

from newsrec.services import LocalServices, ServiceEndpoints, ServiceError


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceEndpoints]:
    """Endpoints of a real Redis and a real Kafka-protocol broker for the whole session, stopped at the end."""
    state_dir = tmp_path_factory.mktemp("services")
    # die_with_parent: if pytest itself is killed, the kernel stops the services too.
    local = LocalServices(state_dir, die_with_parent=True)
    failure = None
    try:
        endpoints = local.start()
    except ServiceError as exc:
        failure = str(exc)
    if failure is not None:  # outside the except block: one message, not a chained traceback
        pytest.fail(f"local services did not start (tests need them; they never skip):\n{failure}", pytrace=False)
    try:
        yield endpoints
    finally:
        local.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A per-test prefix for Redis keys, topics and consumer groups: the test's name plus 8 random hex digits.

    Only [a-z0-9_-], at most 60 characters: valid as a Kafka topic name and a Redis key prefix.
    """
    base = re.sub(r"[^a-z0-9_-]+", "-", request.node.name.lower()).strip("-")[:50]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def redis_client(services: ServiceEndpoints, unique_name: str) -> Iterator[redis.Redis]:
    """A sync redis-py client (bytes replies) on the session Redis; keys under `unique_name` are deleted after."""
    client = redis.Redis.from_url(services.redis_url)
    try:
        yield client
        keys = list(client.scan_iter(match=f"{unique_name}*", count=1000))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory: pytest.TempPathFactory):
    """(world dir, registry dir): the tiny world and one quickly trained, promoted model version (1 epoch each)."""
    from dataclasses import replace

    from data.synth import preset, write_world
    from recsys.registry import ModelRegistry
    from recsys.train import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny-trained")
    write_world(preset("tiny"), root / "world")
    cfg = TrainConfig()
    train(root / "world", ModelRegistry(root / "registry"),
          replace(cfg, retrieval=replace(cfg.retrieval, epochs=1), ranker=replace(cfg.ranker, epochs=1)))
    return root / "world", root / "registry"


@pytest.fixture(scope="session")
def tiny_random_model(tmp_path_factory: pytest.TempPathFactory):
    """(world dir, registry dir): the tiny world and one promoted version of untrained towers and ranker (the
    ranker standardized on the train split's rows): a parent any online fine-tuning beats. Copy before mutating."""
    import torch

    from data.synth import preset, write_world
    from recsys.bundle import export_bundle
    from recsys.dataset import load_dataset
    from recsys.models.item_tower import ItemTower
    from recsys.models.ranker import Ranker
    from recsys.models.user_tower import UserTower
    from recsys.ranking_data import LogCounters, ranker_rows
    from recsys.registry import ModelRegistry
    from recsys.retrieval import item_vectors, user_vectors
    from recsys.train import TrainConfig, build_spec

    root = tmp_path_factory.mktemp("tiny-random")
    write_world(preset("tiny"), root / "world")
    ds = load_dataset(root / "world")
    spec = build_spec(ds, TrainConfig())
    torch.manual_seed(0)
    item = ItemTower(len(spec.categories), len(spec.subcategories), spec.token_buckets, spec.embedding_dim)
    user, ranker = UserTower(spec.embedding_dim, spec.history_len), Ranker(len(spec.ranker_features), (32, 16))
    vecs = item_vectors(item, ds.articles.model_inputs(spec))
    x = torch.from_numpy(ranker_rows(ds, ds.train, spec, vecs, user_vectors(user, ds.train, vecs), LogCounters(ds)))
    ranker.set_standardization(x.mean(0), x.std(0))
    registry = ModelRegistry(root / "registry")
    version = registry.publish(export_bundle(root / "staging", spec, item, user, ranker), training_config={},
                               feature_spec=spec.to_json(), data_range=ds.data_range(), metrics={},
                               kind="newsrec-models", name="untrained (tests)")
    registry.promote(version.version)
    return root / "world", root / "registry"
