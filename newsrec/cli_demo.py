"""`newsrec demo`: bring everything up on local real services and show the news world working.

Each component issue extends this walk-through; it is what the README's first command runs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from newsrec import cli_services

REPO = Path(__file__).resolve().parents[1]


def world_dir(preset: str) -> Path:
    """Where the demo keeps the world of a preset (git-ignored)."""
    return REPO / "var" / "worlds" / preset


def demo(
    preset: Annotated[str, typer.Option(help="World size; default $NEWSREC_PRESET or small.")] = "",
    wait: Annotated[bool, typer.Option(help="Keep serving the page until Ctrl-C (--no-wait: stop after the tour).")]
    = True,
) -> None:
    """Start Redis and the broker, build (once) and check the news world, and print what the system can do."""
    from data.synth import preset as get_preset
    from data.synth import is_written, write_world
    from data.validate import format_stats, validate_dir
    from recsys.learnability import learnability_report

    preset = preset or os.environ.get("NEWSREC_PRESET", "small")
    typer.secho("== 1. local services (real redis-server, real Kafka-protocol broker)", bold=True)
    cli_services.up(None)

    out = world_dir(preset)
    typer.secho(f"\n== 2. the {preset} news world at {out}", bold=True)
    if not is_written(get_preset(preset), out):  # missing, or written from an older config: (re)generate
        write_world(get_preset(preset), out)
        typer.echo("generated")
    else:
        typer.echo("already generated (delete the directory to regenerate)")
    typer.echo(format_stats(validate_dir(out)))

    typer.secho("\n== 3. is there something to learn? per-impression AUC on the future (dev) split", bold=True)
    for key, value in learnability_report(out).items():
        typer.echo(f"  {key:>26}  {value}")
    typer.secho("\n== 4. models: two-tower retrieval + ranker, ONNX, in the registry (var/registry)", bold=True)
    from newsrec.cli_models import print_results
    from recsys.registry import ModelRegistry, default_registry_dir
    from recsys.train import train

    registry = ModelRegistry(default_registry_dir())
    if registry.root.is_dir() and registry.current() is not None:
        version = registry.get(registry.current())
        typer.echo(f"current version {version.version} (delete var/registry to retrain)")
        offline = version
        while "systems" not in offline.metrics and offline.parent:  # online children carry their gate's metrics
            offline = registry.get(offline.parent)
        if offline is not version:
            typer.echo(f"(fine-tuned online from {offline.version}; its offline evaluation:)")
        if "systems" in offline.metrics:
            print_results(offline.metrics["systems"])
    else:
        result = train(out, registry)
        typer.echo(f"trained and promoted {result.version.version} in {sum(result.seconds.values()):.0f} s")
        print_results(result.results)

    typer.secho("\n== 5. live: the stream workers and the API on the world's end; a click and a breaking story",
                bold=True)
    from newsrec.demo_live import run_live
    from newsrec.services import running_endpoints

    run_live(out, registry.root, running_endpoints(), REPO / "var" / "demo", wait=wait)
    typer.secho("\nRedis and the broker keep running for you: `make down` (or `.venv/bin/newsrec down`) stops them.",
                fg="green")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
