"""`newsrec data ...`: make a synthetic news world, validate MIND directories, replay a world as events."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The news world: synthesize, validate, inspect.", no_args_is_help=True)


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Directory to write the world to (created).")],
    preset: Annotated[str, typer.Option(help="World size: tiny (a test, seconds), small (the demo), large.")] = "small",
    seed: Annotated[int | None, typer.Option(help="Random seed; the same seed gives the same world.")] = None,
) -> None:
    """Write a synthetic news world in MIND format (train/, dev/), news_meta.tsv and its ground truth (truth/)."""
    from data.synth import preset as get_preset
    from data.synth import write_world

    try:
        config = get_preset(preset, seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from None
    started = time.perf_counter()
    world = write_world(config, out)
    typer.echo(f"wrote {config.preset} world (seed {config.seed}) to {out} in {time.perf_counter() - started:.1f} s: "
               f"{len(world.articles)} articles, {config.n_users} users, {config.n_impressions} impressions")


@app.command()
def validate(path: Annotated[Path, typer.Argument(help="A MIND directory (or one with train/ and dev/ in it).")]
             ) -> None:
    """Check MIND files strictly (every line, every column) and print their statistics."""
    from data.schema import MindFormatError
    from data.validate import format_stats, validate_dir

    try:
        stats = validate_dir(path)
    except (MindFormatError, OSError, ValueError) as exc:
        typer.echo(f"invalid: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(format_stats(stats))


@app.command()
def learnability(path: Annotated[Path, typer.Argument(help="A synthetic world directory (needs truth/).")],
                 as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Per-impression AUC of popularity, a content+history baseline and the oracle on the dev split."""
    from recsys.learnability import learnability_report

    report = learnability_report(path)
    if as_json:
        typer.echo(json.dumps(report))
        return
    for key, value in report.items():
        typer.echo(f"{key:>26}  {value}")


@app.command()
def events(path: Annotated[Path, typer.Argument(help="A synthetic world directory.")],
           limit: Annotated[int | None, typer.Option(help="Stop after this many events.")] = None) -> None:
    """Print the world as a time-ordered JSON-lines stream of article, impression and click events."""
    from data.events import event_to_json, iter_world_events

    for i, event in enumerate(iter_world_events(path)):
        if limit is not None and i >= limit:
            break
        sys.stdout.write(json.dumps(event_to_json(event)) + "\n")
