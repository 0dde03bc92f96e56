"""Serving picks a version's int8 ranker child (`newsrec export`) only when it is verified, differs from its parent
in ranker.onnx alone and kept its AUC; a tampered child is refused and the fp32 ranker keeps serving."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from recsys.bundle import RANKER
from recsys.export import quantize_int8
from recsys.registry import ModelRegistry
from serving.backends import load_backend
from serving.int8_ranker import int8_ranker_child

pytestmark = pytest.mark.slow


def _publish_child(reg: ModelRegistry, parent, tmp: Path, auc_delta: float, tamper_tower: bool = False) -> str:
    staging = tmp / f"child-{auc_delta}-{tamper_tower}"
    shutil.copytree(parent.path, staging, ignore=shutil.ignore_patterns("manifest.json"))
    for f in staging.iterdir():
        f.chmod(0o644)
    (staging / RANKER).unlink()
    quantize_int8(parent.path / RANKER, staging / RANKER)
    if tamper_tower:
        (staging / "feature_spec.json").write_text((staging / "feature_spec.json").read_text() + " ")
    return reg.publish(staging, training_config=parent.training_config, feature_spec=parent.feature_spec,
                       data_range=parent.data_range, metrics={"summary": {}, "int8": {"auc_delta": auc_delta}},
                       parent=parent.version, kind="newsrec-models", name="int8 ranker").version


def test_int8_child_is_picked_only_when_it_is_the_same_model_with_a_quantized_ranker(tiny_trained, tmp_path):
    _, registry = tiny_trained
    root = tmp_path / "registry"
    shutil.copytree(registry, root)
    reg = ModelRegistry(root)
    parent = reg.load()
    assert int8_ranker_child(reg, parent) is None
    _publish_child(reg, parent, tmp_path, auc_delta=-0.05)              # lost too much AUC
    _publish_child(reg, parent, tmp_path, auc_delta=0.0, tamper_tower=True)  # not only the ranker changed
    assert int8_ranker_child(reg, parent) is None
    good = _publish_child(reg, parent, tmp_path, auc_delta=0.0)
    child = int8_ranker_child(reg, parent)
    assert child is not None and child.version == good

    fp32 = load_backend("onnxruntime", parent.path)
    int8 = load_backend("onnxruntime", parent.path, ranker_path=child.path / RANKER)
    assert int8.name.endswith(good) and fp32.name == "onnxruntime"
    rows = np.random.default_rng(0).normal(size=(500, len(fp32.spec.ranker_features))).astype(np.float32)
    a, b = fp32.rank(rows), int8.rank(rows)
    assert b.shape == a.shape and np.corrcoef(a, b)[0, 1] > 0.98 and not np.array_equal(a, b)

    ranker = child.path / RANKER  # a bit flip after publish: verification refuses it, fp32 serves
    ranker.chmod(0o644)
    ranker.write_bytes(ranker.read_bytes()[:-1] + b"\0")
    assert int8_ranker_child(reg, parent) is None
