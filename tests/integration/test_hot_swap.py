"""Hot swap under load: promote and rollback are picked up without failing a request; a corrupt version is
refused while the old one keeps serving."""
from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from feature_store.materialize import materialize_world
from recsys.registry import ModelRegistry
from recsys.train import TrainConfig, train
from serving.app import create_app
from serving.settings import ModelSettings, ServeSettings, StoreSettings

pytestmark = pytest.mark.integration
FAST = replace(TrainConfig(), retrieval=replace(TrainConfig().retrieval, epochs=1),
               ranker=replace(TrainConfig().ranker, epochs=1))


def _wait_for(client, version: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/v1/recommend", params={"user_id": "U3"}).json()["model_version"] == version:
            return
        time.sleep(0.1)
    raise AssertionError(f"server never switched to {version}")


def test_swaps_under_concurrent_requests_fail_none(tiny_trained, services, unique_name, tmp_path):
    world, original = tiny_trained
    registry_dir = tmp_path / "registry"
    shutil.copytree(original, registry_dir)
    registry = ModelRegistry(registry_dir)
    first = registry.current()
    materialize_world(world, services.redis_url, unique_name)
    settings = ServeSettings(store=StoreSettings(redis_url=services.redis_url, prefix=unique_name),
                             model=ModelSettings(registry=registry_dir), catalogue_dir=world, world_end=True,
                             retrieval_k=100, registry_poll_s=0.2)
    statuses, versions, stop = [], set(), threading.Event()
    with TestClient(create_app(settings)) as client:
        def hammer():
            while not stop.is_set():
                r = client.get("/v1/recommend", params={"user_id": "U5", "k": 10})
                statuses.append(r.status_code)
                versions.add(r.json().get("model_version"))

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            second = train(world, registry, FAST, promote=True).version.version
            _wait_for(client, second)
            assert registry.rollback() == first
            _wait_for(client, first)
            # a corrupt version made current behind the registry's back is refused; the old one keeps serving
            bad = train(world, registry, FAST, promote=False).version
            (bad.path / "ranker.onnx").chmod(0o644)
            with (bad.path / "ranker.onnx").open("ab") as f:
                f.write(b"\0")
            (registry_dir / "CURRENT").write_text(bad.version)
            time.sleep(1.5)
            assert client.get("/v1/recommend", params={"user_id": "U3"}).json()["model_version"] == first
            assert 'newsrec_model_swaps_total{outcome="refused"} 1.0' in client.get("/metrics").text
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
    assert statuses and set(statuses) == {200}, set(statuses)
    assert {first, second} <= versions
