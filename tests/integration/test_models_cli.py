"""`newsrec train | evaluate | export | registry` end to end on the tiny world and on a hand-written real-MIND
directory: versions are published with full manifests, verified on load, and tampering is refused."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.registry import ModelRegistry

pytestmark = pytest.mark.slow
NEWSREC = [sys.executable, "-m", "newsrec.cli"]
MIND_FIXTURE = Path(__file__).parents[1] / "fixtures" / "mind_small"
KEYS = {"auc", "mrr", "ndcg5", "ndcg10", "recall_at_k", "gap_closed"}


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*NEWSREC, *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    world, registry = root / "world", root / "registry"
    run("data", "synth", "--preset", "tiny", "--out", str(world))
    result = run("train", "--world", str(world), "--registry", str(registry))
    assert "gap closed" in result.stdout
    return world, registry


def test_train_publishes_a_current_version_with_a_full_manifest(trained):
    _, registry = trained
    reg = ModelRegistry(registry)
    version = reg.get(reg.current())
    m = version.manifest
    assert set(m["files"]) == {"item_tower.onnx", "user_tower.onnx", "ranker.onnx", "feature_spec.json",
                               "item_tower.safetensors", "user_tower.safetensors", "ranker.safetensors"}
    assert m["feature_spec"]["ranker_features"] and m["feature_spec"]["position_prior"]
    assert m["data_range"]["train_to"] < m["data_range"]["dev_from"]  # time split: past -> future
    assert m["training_config"]["retrieval"]["log_q_weight"] == 1.0
    summary = m["metrics"]["summary"]
    assert {"gap_closed", "recall_vs_oracle", "auc", "recall_at_k"} <= set(summary)
    assert max(m["metrics"]["onnx_parity_max_abs_error"].values()) <= 1e-4


def test_evaluate_json_compares_the_model_with_every_baseline(trained):
    world, registry = trained
    lines = run("evaluate", "--world", str(world), "--registry", str(registry), "--json").stdout.splitlines()
    systems = {r["model"]: r for r in map(json.loads, lines)}
    assert set(systems) == {"model", "model_position_free", "popularity", "recency", "random", "oracle",
                            "oracle_history", "oracle_history_shows", "oracle_told_changes"}
    for r in systems.values():
        assert KEYS <= set(r)
    assert systems["oracle"]["gap_closed"] == pytest.approx(1.0)
    assert systems["popularity"]["gap_closed"] == pytest.approx(0.0)
    assert systems["model"]["auc"] > systems["popularity"]["auc"] + 0.05  # it learned something
    assert systems["random"]["auc"] == pytest.approx(0.5, abs=0.05)
    # told more and more of what the log reveals of interests: above popularity, below the oracle that knows them
    assert (systems["popularity"]["auc"] < systems["oracle_history"]["auc"] < systems["oracle_history_shows"]["auc"]
            < systems["oracle_told_changes"]["auc"] < systems["oracle"]["auc"])


def test_a_tampered_version_is_refused_with_a_clear_error(trained, tmp_path):
    world, registry = trained
    copy = tmp_path / "registry"
    subprocess.run(["cp", "-r", str(registry), str(copy)], check=True)
    reg = ModelRegistry(copy)
    ranker = reg.get(reg.current()).path / "ranker.onnx"
    ranker.chmod(0o644)
    with ranker.open("ab") as f:
        f.write(b"\0")
    result = run("evaluate", "--world", str(world), "--registry", str(copy), check=False)
    assert result.returncode == 1
    assert "ranker.onnx" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_export_publishes_an_int8_child_and_reports_tensorrt(trained, tmp_path):
    world, registry = trained
    result = run("export", "--world", str(world), "--registry", str(registry), "--out", str(tmp_path / "trt"))
    reg = ModelRegistry(registry)
    child = reg.list()[-1]
    assert child.parent == reg.current()  # published beside, not promoted
    info = child.manifest["metrics"]["int8"]
    assert {"auc_delta", "speedup"} <= set(info) and abs(info["auc_delta"]) < 0.02
    assert "TensorRT" in result.stdout


def test_the_same_commands_run_on_real_mind_files(tmp_path):
    registry = tmp_path / "registry"
    run("train", "--world", str(MIND_FIXTURE), "--registry", str(registry), "--tower-epochs", "1",
        "--ranker-epochs", "1")
    lines = run("evaluate", "--world", str(MIND_FIXTURE), "--registry", str(registry), "--json").stdout.splitlines()
    systems = {r["model"]: r for r in map(json.loads, lines)}
    assert "oracle" not in systems and systems["model"]["gap_closed"] is None  # real logs have no ground truth
    assert KEYS <= set(systems["model"])
