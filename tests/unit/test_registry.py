"""The model registry: publish/promote/rollback, integrity checks on load, no pickles, concurrent ids, the CLI."""
from __future__ import annotations

import json
import multiprocessing
import os
import stat
import zipfile
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from newsrec.cli_registry import app
from recsys.registry import (
    LoadedVersion,
    ModelRegistry,
    ModelVersion,
    RegistryError,
    RegistryIntegrityError,
    VersionNotFound,
    default_registry_dir,
)

META = {
    "training_config": {"epochs": 3, "lr": 0.001},
    "feature_spec": {"history_len": 50, "text_encoder": "all-MiniLM-L6-v2"},
    "data_range": {"train_from": "2026-11-01", "train_to": "2026-11-07", "world": "tiny"},
}


def stage(tmp_path: Path, name: str = "stage", payload: bytes = b"onnx-bytes") -> Path:
    """A staging directory shaped like an exported model: ONNX, safetensors, JSON and a nested TSV."""
    src = tmp_path / name
    (src / "vocab").mkdir(parents=True, exist_ok=True)
    (src / "ranker.onnx").write_bytes(payload)
    (src / "user_tower.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (src / "config.json").write_text('{"dim": 64}')
    (src / "vocab" / "categories.tsv").write_text("news\t0\nsports\t1\n")
    return src


def publish(reg: ModelRegistry, tmp_path: Path, auc: float = 0.7, **kwargs) -> ModelVersion:
    return reg.publish(stage(tmp_path, payload=f"model-{auc}".encode()), metrics={"auc": auc, "recall@10": 0.3},
                       **META, **kwargs)


@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def writable(path: Path) -> Path:
    """Undo the registry's chmod 0o444 so a test can tamper (root ignores it anyway; other users do not)."""
    path.chmod(0o644)
    return path


def test_publish_get_list_promote_rollback_round_trip(reg: ModelRegistry, tmp_path: Path) -> None:
    v1 = publish(reg, tmp_path, auc=0.61, kind="ranker", name="mlp", notes="first")
    assert reg.current() is None, "publish must not move the current pointer"
    v2 = publish(reg, tmp_path, auc=0.65, parent=v1.version[:5])
    assert [v.version for v in reg.list()] == [v1.version, v2.version]
    got = reg.get(v2.version)
    assert got == v2 and got.parent == v1.version and got.metrics["auc"] == 0.65
    assert got.feature_spec == META["feature_spec"] and got.data_range == META["data_range"]
    assert got.training_config == META["training_config"]
    assert set(got.files) == {"ranker.onnx", "user_tower.safetensors", "config.json", "vocab/categories.tsv"}
    m = reg.get(v1.version).manifest
    assert (m["manifest_schema"], m["kind"], m["name"], m["notes"], m["parent"]) == (1, "ranker", "mlp", "first", None)
    assert m["created_at"].endswith("+00:00") and m["files"]["config.json"]["bytes"] == len('{"dim": 64}')

    reg.promote(v1.version)
    reg.promote(v2.version)
    reg.promote(v2.version)  # a no-op: not a second history entry
    assert reg.current() == v2.version
    assert [(h["action"], h["version"], h["previous"]) for h in reg.history()] == [
        ("promote", v1.version, None), ("promote", v2.version, v1.version)]
    assert reg.rollback() == v1.version and reg.current() == v1.version
    assert reg.history()[-1]["action"] == "rollback"

    loaded = reg.load()
    assert isinstance(loaded, LoadedVersion) and loaded.version == v1.version
    assert (loaded.path / "vocab" / "categories.tsv").read_text().startswith("news")


def test_rollback_walks_back_twice_then_errors(reg: ModelRegistry, tmp_path: Path) -> None:
    ids = [publish(reg, tmp_path, auc=0.6 + i / 100).version for i in range(3)]
    with pytest.raises(RegistryError, match="no version was promoted"):
        reg.rollback()
    for v in ids:
        reg.promote(v)
    assert reg.rollback() == ids[1]
    assert reg.rollback() == ids[0]
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        reg.rollback()
    assert reg.current() == ids[0]
    reg.promote(ids[2])  # a promote after rollbacks: rollback returns to where it came from
    assert reg.rollback() == ids[0]


def test_load_without_current_and_missing_registry_error(reg: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no model registry at"):
        reg.list()
    publish(reg, tmp_path)
    with pytest.raises(RegistryError, match="promote one first"):
        reg.load()


def test_appended_byte_fails_load_naming_file_and_hashes(reg: ModelRegistry, tmp_path: Path) -> None:
    v = publish(reg, tmp_path)
    reg.promote(v.version)
    expected = v.files["ranker.onnx"]["sha256"]
    with writable(v.path / "ranker.onnx").open("ab") as f:
        f.write(b"\x00")
    with pytest.raises(RegistryIntegrityError) as err:
        reg.load()
    msg = str(err.value)
    assert v.version in msg and "'ranker.onnx'" in msg and f"expected {expected[:12]}" in msg and "actual " in msg
    with pytest.raises(RegistryIntegrityError):
        reg.promote(v.version)  # a bad artifact is refused before the pointer moves


def test_missing_file_fails_load(reg: ModelRegistry, tmp_path: Path) -> None:
    v = publish(reg, tmp_path)
    (v.path / "vocab" / "categories.tsv").unlink()
    with pytest.raises(RegistryIntegrityError, match=r"'vocab/categories.tsv' listed in the manifest is missing"):
        reg.load(v.version)


def test_extra_file_fails_load(reg: ModelRegistry, tmp_path: Path) -> None:
    v = publish(reg, tmp_path)
    (v.path / "sneaky.onnx").write_bytes(b"x")
    with pytest.raises(RegistryIntegrityError, match=r"unlisted file 'sneaky.onnx'"):
        reg.load(v.version)


def test_manifest_tampering_fails(reg: ModelRegistry, tmp_path: Path) -> None:
    v = publish(reg, tmp_path)
    manifest = json.loads((v.path / "manifest.json").read_text())
    manifest["files"]["config.json"]["sha256"] = "0" * 64
    writable(v.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RegistryIntegrityError, match=r"'config.json' sha256 mismatch: expected 000000000000"):
        reg.load(v.version)

    manifest["files"]["../escape.onnx"] = {"sha256": "0" * 64, "bytes": 1}
    (v.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RegistryIntegrityError, match="invalid file path"):
        reg.get(v.version)
    del manifest["feature_spec"]
    (v.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RegistryIntegrityError, match="'feature_spec' is missing"):
        reg.get(v.version)
    (v.path / "manifest.json").write_text("{not json")
    with pytest.raises(RegistryIntegrityError, match="cannot read manifest.json"):
        reg.load(v.version)


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "model.pkl", "x.pickle", "x.joblib", "sub/m.PT"])
def test_pickle_extensions_refused(reg: ModelRegistry, tmp_path: Path, name: str) -> None:
    src = stage(tmp_path)
    (src / name).parent.mkdir(exist_ok=True)
    (src / name).write_bytes(b"anything")
    with pytest.raises(RegistryError, match="no pickle: save weights as safetensors"):
        reg.publish(src, metrics={}, **META)
    assert not reg.root.exists(), "validation happens before anything is written"


def test_pickle_content_refused_whatever_the_name(reg: ModelRegistry, tmp_path: Path) -> None:
    src = stage(tmp_path)
    (src / "weights.bin").write_bytes(b"\x80\x04\x95\x05\x00\x00\x00")  # pickle protocol 4 header
    with pytest.raises(RegistryError, match="no pickle"):
        reg.publish(src, metrics={}, **META)
    (src / "weights.bin").unlink()
    with zipfile.ZipFile(src / "pytorch_model.bin", "w") as zf:  # the torch.save layout
        zf.writestr("archive/data.pkl", b"\x80\x02.")
    with pytest.raises(RegistryError, match="no pickle"):
        reg.publish(src, metrics={}, **META)


def test_publish_validates_inputs(reg: ModelRegistry, tmp_path: Path) -> None:
    src = stage(tmp_path)
    with pytest.raises(RegistryError, match="feature_spec is required"):
        reg.publish(src, metrics={}, **{**META, "feature_spec": {}})
    with pytest.raises(RegistryError, match="metrics must be a dict"):
        reg.publish(src, metrics=[0.7], **META)
    with pytest.raises(RegistryError, match="metrics is not strict JSON"):
        reg.publish(src, metrics={"auc": float("nan")}, **META)
    with pytest.raises(RegistryError, match="missing or holds no files"):
        reg.publish(tmp_path / "nowhere", metrics={}, **META)
    (src / "manifest.json").write_text("{}")
    with pytest.raises(RegistryError, match="must not contain manifest.json"):
        reg.publish(src, metrics={}, **META)
    (src / "manifest.json").unlink()
    publish(reg, tmp_path)
    with pytest.raises(VersionNotFound):
        reg.publish(src, metrics={}, parent="v0099", **META)


def test_files_read_only_after_publish(reg: ModelRegistry, tmp_path: Path) -> None:
    v = publish(reg, tmp_path)
    for path in [v.path / "manifest.json", *(v.path / rel for rel in v.files)]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o444, path
    assert stat.S_IMODE((tmp_path / "stage" / "ranker.onnx").stat().st_mode) != 0o444, "the source is left alone"
    assert not list((tmp_path / "registry" / ".staging").iterdir()), "no staging leftovers"


def test_ids_unique_and_sortable(reg: ModelRegistry, tmp_path: Path) -> None:
    ids = [publish(reg, tmp_path, auc=0.5 + i / 100).version for i in range(5)]
    assert len(set(ids)) == 5 and ids == sorted(ids)
    assert [v.version for v in reg.list()] == ids
    assert [v.split("-")[0] for v in ids] == ["v0001", "v0002", "v0003", "v0004", "v0005"]


def _publish_in_child(root: str, src: str, n: int, barrier, queue) -> None:
    barrier.wait()
    reg = ModelRegistry(Path(root))
    queue.put([reg.publish(Path(src), metrics={"auc": 0.5}, **META).version for _ in range(n)])


def test_concurrent_publish_from_two_processes_gives_distinct_ids(reg: ModelRegistry, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    src = stage(tmp_path)
    procs = [ctx.Process(target=_publish_in_child, args=(str(reg.root), str(src), 5, barrier, queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    ids = [v for r in results for v in r]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert len({v.split("-")[0] for v in ids}) == 10, "counters are unique too"
    assert sorted(v.version for v in reg.list()) == sorted(ids)
    for v in ids:
        reg.load(v)


def test_prefix_lookup_and_unknown_versions(reg: ModelRegistry, tmp_path: Path) -> None:
    v1, v2 = publish(reg, tmp_path).version, publish(reg, tmp_path).version
    assert reg.get("v0002").version == v2 and reg.resolve(v1) == v1
    with pytest.raises(VersionNotFound, match="ambiguous: it matches 2 versions"):
        reg.get("v000")
    with pytest.raises(VersionNotFound, match=r"no version 'v0009' in .* \(2 versions; nearest: "):
        reg.get("v0009")
    with pytest.raises(VersionNotFound, match="non-empty string"):
        reg.get("")
    with pytest.raises(VersionNotFound):
        reg.promote("../versions")


def test_default_registry_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEWSREC_REGISTRY_DIR", str(tmp_path))
    assert default_registry_dir() == tmp_path
    monkeypatch.delenv("NEWSREC_REGISTRY_DIR")
    assert default_registry_dir().parts[-2:] == ("var", "registry")


# ----- the CLI -----

def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_cli_list_show_promote_rollback_verify(reg: ModelRegistry, tmp_path: Path) -> None:
    root = str(reg.root)
    v1 = publish(reg, tmp_path, auc=0.61)
    v2 = publish(reg, tmp_path, auc=0.6543, parent=v1.version)

    out = cli("promote", "v0001", "--registry", root)
    assert out.exit_code == 0 and v1.version in out.output
    out = cli("promote", "v0002", "--registry", root)
    assert out.exit_code == 0 and f"was {v1.version}" in out.output

    out = cli("list", "--registry", root)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split()[:3] == ["version", "created", "parent"]
    assert lines[2].startswith(f"* {v2.version}") and "auc=0.6543" in lines[2] and "recall@10=0.3" in lines[2]
    assert lines[1].startswith(f"  {v1.version}") and " v0001 " in lines[2]

    out = cli("show", "v0002", "--registry", root)
    assert out.exit_code == 0 and json.loads(out.output)["version"] == v2.version

    out = cli("verify", "--registry", root)
    assert out.exit_code == 0 and out.output.startswith(f"OK {v2.version}: 4 files")

    out = cli("rollback", "--registry", root)
    assert out.exit_code == 0 and f"current: {v1.version}" in out.output
    out = cli("rollback", "--registry", root)
    assert out.exit_code == 1 and "nothing to roll back to" in out.stderr


def test_cli_verify_tampered_file_exits_1_with_one_line(reg: ModelRegistry, tmp_path: Path) -> None:
    v = publish(reg, tmp_path)
    with writable(v.path / "config.json").open("ab") as f:
        f.write(b" ")
    out = cli("verify", v.version[:5], "--registry", str(reg.root))
    assert out.exit_code == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "'config.json' sha256 mismatch" in out.stderr
    assert out.exception is None or isinstance(out.exception, SystemExit)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    for args in (["list"], ["show", "v0001"], ["promote", "v0001"], ["rollback"], ["verify"]):
        out = cli(*args, "--registry", str(tmp_path / "missing"))
        assert out.exit_code == 1 and out.stderr.startswith("error: no model registry at"), args
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.output


def test_cli_help_lists_every_command_with_its_docstring() -> None:
    out = cli("--help")
    assert out.exit_code == 0
    for command in ("list", "show", "promote", "rollback", "verify"):
        assert command in out.output
        sub = cli(command, "--help")
        assert sub.exit_code == 0 and "--registry" in sub.output
