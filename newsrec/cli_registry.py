"""`newsrec registry ...`: list, inspect, verify, promote and roll back model versions in the model registry."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from recsys.registry import ModelRegistry, RegistryError, default_registry_dir

app = typer.Typer(help="The model registry: immutable, sha256-verified model versions and the current pointer.",
                  no_args_is_help=True)

RegistryOption = Annotated[Path | None, typer.Option(
    "--registry", help="Registry directory. Default: $NEWSREC_REGISTRY_DIR, else <repo>/var/registry.")]
ERRORS = (RegistryError, OSError)  # reported as one line on stderr, exit 1; anything else is a bug: traceback
KEY_METRICS = ("auc", "gap_closed", "recall")  # shown by `list`; "recall" also matches recall@10 and the like


def _registry(path: Path | None) -> ModelRegistry:
    return ModelRegistry(path if path is not None else default_registry_dir())


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _metrics_summary(metrics: dict) -> str:
    metrics = metrics.get("summary", metrics)  # newsrec train nests its headline numbers under "summary"
    shown = [(k, v) for k, v in sorted(metrics.items()) if any(k.startswith(m) for m in KEY_METRICS)]
    return "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown) or "-"


@app.command("list")
def list_versions(registry: RegistryOption = None) -> None:
    """List every version, oldest first; `*` marks the current one."""
    try:
        reg = _registry(registry)
        versions, current = reg.list(), reg.current()
    except ERRORS as exc:
        raise _fail(exc) from None
    if not versions:
        typer.echo(f"no versions in {reg.root}")
        return
    width = max(len(v.version) for v in versions)
    typer.echo(f"  {'version':<{width}}  {'created':<25}  {'parent':<6}  metrics")
    for v in versions:
        marker = "*" if v.version == current else " "
        parent = v.parent.split("-")[0] if v.parent else "-"
        typer.echo(f"{marker} {v.version:<{width}}  {v.created_at:<25}  {parent:<6}  {_metrics_summary(v.metrics)}")


@app.command()
def show(version: Annotated[str, typer.Argument(help="A version id or an unambiguous prefix (e.g. v0003).")],
         registry: RegistryOption = None) -> None:
    """Print a version's manifest as JSON (training config, feature spec, data range, metrics, file hashes)."""
    try:
        manifest = _registry(registry).get(version).manifest
    except ERRORS as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(manifest, indent=2, sort_keys=True))


@app.command()
def promote(version: Annotated[str, typer.Argument(help="A version id or an unambiguous prefix (e.g. v0003).")],
            registry: RegistryOption = None) -> None:
    """Verify a version's files, then make it the current version (recorded in the history for rollback)."""
    try:
        reg = _registry(registry)
        previous = reg.current()
        reg.promote(version)
        current = reg.current()
    except ERRORS as exc:
        raise _fail(exc) from None
    typer.echo(f"current: {current}" + (f" (was {previous})" if previous and previous != current else ""))


@app.command()
def rollback(registry: RegistryOption = None) -> None:
    """Make the previously promoted version current again; each rollback walks one further back."""
    try:
        reg = _registry(registry)
        previous = reg.current()
        current = reg.rollback()
    except ERRORS as exc:
        raise _fail(exc) from None
    typer.echo(f"current: {current} (rolled back from {previous})")


@app.command()
def verify(version: Annotated[str | None, typer.Argument(help="A version id or prefix; default: the current one.")]
           = None, registry: RegistryOption = None) -> None:
    """Check every file of a version against the sha256 in its manifest; exit 1 on any difference."""
    try:
        loaded = _registry(registry).load(version)
    except ERRORS as exc:
        raise _fail(exc) from None
    typer.echo(f"OK {loaded.version}: {len(loaded.files)} files match their sha256")
