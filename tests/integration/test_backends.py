"""Inference backends: one conformance suite over onnxruntime and torch, on a version trained on the tiny world."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.dataset import load_dataset
from recsys.registry import ModelRegistry
from serving.backends import BACKENDS, load_backend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def version(tiny_trained) -> tuple[Path, Path]:
    world, registry = tiny_trained
    return world, ModelRegistry(registry).load().path


@pytest.fixture(scope="module")
def inputs(version):
    world, path = version
    backend = load_backend("onnxruntime", path)
    ds = load_dataset(world, backend.spec.history_len)
    items = ds.articles.model_inputs(backend.spec)
    rng = np.random.default_rng(0)
    return items, ds.dev.history[:64], rng.normal(size=(300, len(backend.spec.ranker_features))).astype(np.float32)


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_contract(version, inputs, name):
    backend = load_backend(name, version[1])
    items, history, features = inputs
    vecs = backend.item_vectors(items)
    assert vecs.shape == (len(items["category"]), backend.spec.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    users = backend.user_vectors(history, vecs)
    assert users.shape == (len(history), backend.spec.embedding_dim)
    assert backend.rank(features).shape == (len(features),)


def test_backends_agree(version, inputs):
    onnx, torch_ = (load_backend(n, version[1]) for n in ("onnxruntime", "torch"))
    items, history, features = inputs
    v1, v2 = onnx.item_vectors(items), torch_.item_vectors(items)
    assert np.abs(v1 - v2).max() <= 1e-4
    assert np.abs(onnx.user_vectors(history, v1) - torch_.user_vectors(history, v1)).max() <= 1e-4
    assert np.abs(onnx.rank(features) - torch_.rank(features)).max() <= 1e-4


def test_unknown_backend_is_a_clear_error(version):
    with pytest.raises(ValueError, match="unknown inference backend 'tensorflow'"):
        load_backend("tensorflow", version[1])
