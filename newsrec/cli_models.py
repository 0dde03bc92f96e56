"""`newsrec train | evaluate | export`: train and publish a model version, score one, derive int8 / TensorRT."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

WorldOption = Annotated[Path, typer.Option("--world", help="A MIND directory: a synthetic world or real MIND.")]
RegistryOption = Annotated[Path | None, typer.Option("--registry", help="Registry directory (default "
                                                     "$NEWSREC_REGISTRY_DIR or var/registry).", show_default=False)]
VersionOption = Annotated[str | None, typer.Option("--version", help="Version id or prefix (default: current).",
                                                   show_default=False)]
HEADERS = {"recall_at_k": "recall@k", "gap_closed": "gap closed", "category_diversity": "diversity",
           "mean_age_h": "age h"}
COLUMNS = ("auc", "mrr", "ndcg5", "ndcg10", "recall_at_k", "gap_closed", "coverage", "category_diversity",
           "mean_age_h")


def _registry(path: Path | None):
    from recsys.registry import ModelRegistry, default_registry_dir

    return ModelRegistry(path or default_registry_dir())


def print_results(results: list[dict]) -> None:
    """The metrics table: one row per system, the model first."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dev split (recall@{results[0]['k']} over the live pool; diversity = categories in top-10)")
    table.add_column("system")
    for c in COLUMNS:
        table.add_column(HEADERS.get(c, c), justify="right")
    for r in results:
        table.add_row(r["model"], *("-" if r.get(c) is None else f"{r[c]:.3f}" for c in COLUMNS))
    Console(width=150).print(table)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def train(world: WorldOption, registry: RegistryOption = None,
          promote: Annotated[bool, typer.Option(help="Make the new version current.")] = True,
          tower_epochs: Annotated[int, typer.Option(help="Two-tower epochs.")] = 2,
          ranker_epochs: Annotated[int, typer.Option(help="Ranker epochs.")] = 3) -> None:
    """Train the two towers and the ranker on the train split, export ONNX, evaluate on dev, publish a version."""
    from dataclasses import replace

    from recsys.train import TrainConfig, train as run_train

    cfg = TrainConfig()
    cfg = replace(cfg, retrieval=replace(cfg.retrieval, epochs=tower_epochs),
                  ranker=replace(cfg.ranker, epochs=ranker_epochs))
    try:
        result = run_train(world, _registry(registry), cfg, promote=promote)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    print_results(result.results)
    summary = result.version.manifest["metrics"]["summary"]
    typer.echo(f"version {result.version.version}{' (current)' if promote else ''}: "
               f"gap closed {summary['gap_closed']}, recall vs oracle {summary.get('recall_vs_oracle')}")
    typer.echo("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))


def evaluate(world: WorldOption, registry: RegistryOption = None, version: VersionOption = None,
             as_json: Annotated[bool, typer.Option("--json", help="One JSON object per system.")] = False) -> None:
    """Score a registry version (hash-verified ONNX) and the baselines on the dev split of --world."""
    from data.truth import GroundTruth
    from recsys.bundle import ModelBundle
    from recsys.dataset import load_dataset
    from recsys.evaluate import evaluate as run_evaluate
    from recsys.registry import RegistryError

    try:
        loaded = _registry(registry).load(version)
        bundle = ModelBundle.load(loaded.path)
        ds = load_dataset(world, bundle.spec.history_len)
    except (RegistryError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    truth = GroundTruth.load(world) if (world / "truth").exists() else None
    results = run_evaluate(ds, bundle, truth)
    if as_json:
        for r in results:
            typer.echo(json.dumps(r))
    else:
        print_results(results)


def export(world: WorldOption, registry: RegistryOption = None, version: VersionOption = None,
           int8: Annotated[bool, typer.Option(help="Publish a child version with an int8 ranker.")] = True,
           tensorrt: Annotated[bool, typer.Option(help="Build FP16 TensorRT engines where possible.")] = True,
           out: Annotated[Path | None, typer.Option(help="Where TensorRT engines go.")] = None) -> None:
    """Derive deployment artifacts from a version: an int8 ranker (metric delta, speed-up) and TensorRT engines."""
    import numpy as np

    from recsys.bundle import RANKER, ModelBundle
    from recsys.export import TensorRTUnavailable, benchmark_onnx, build_tensorrt_engine, quantize_int8
    from recsys.registry import RegistryError

    reg = _registry(registry)
    try:
        loaded = reg.load(version)
    except RegistryError as exc:
        _fail(str(exc))
    if int8:
        from data.truth import GroundTruth
        from recsys.dataset import load_dataset
        from recsys.evaluate import evaluate as run_evaluate
        from recsys.train import summary

        with tempfile.TemporaryDirectory(prefix="newsrec-int8-") as tmp:
            staging = Path(tmp) / "v"
            shutil.copytree(loaded.path, staging, ignore=shutil.ignore_patterns("manifest.json"))
            (staging / RANKER).chmod(0o644)
            quantize_int8(loaded.path / RANKER, staging / RANKER)
            bundle = ModelBundle.load(staging)
            ds = load_dataset(world, bundle.spec.history_len)
            truth = GroundTruth.load(world) if (world / "truth").exists() else None
            results = run_evaluate(ds, bundle, truth)
            feats = {"features": np.random.default_rng(0).normal(size=(500, len(bundle.spec.ranker_features)))
                     .astype(np.float32)}
            fp32, q8 = benchmark_onnx(loaded.path / RANKER, feats), benchmark_onnx(staging / RANKER, feats)
            new, old = summary(results), loaded.metrics["summary"]
            metrics = {"summary": new, "systems": results, "int8": {
                "auc_delta": new["auc"] - old["auc"], "ndcg10_delta": new["ndcg10"] - old["ndcg10"],
                "ranker_500_median_us_fp32": fp32["median_us"], "ranker_500_median_us_int8": q8["median_us"],
                "speedup": fp32["median_us"] / q8["median_us"]}}
            child = reg.publish(staging, training_config=loaded.training_config, feature_spec=loaded.feature_spec,
                                data_range=loaded.data_range, metrics=metrics, parent=loaded.version,
                                kind="newsrec-models", name="two-tower+ranker (int8 ranker)")
        typer.echo(f"int8 version {child.version} (not promoted): " + json.dumps(metrics["int8"]))
    if tensorrt:
        engines = out or Path("var") / "tensorrt" / loaded.version
        try:
            for name in (RANKER,):
                path = build_tensorrt_engine(loaded.path / name, engines / name.replace(".onnx", ".plan"))
                typer.echo(f"TensorRT engine: {path}")
        except TensorRTUnavailable as exc:
            typer.echo(f"TensorRT skipped: {exc}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("export")(export)
