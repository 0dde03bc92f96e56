"""`newsrec bench encoders`: our trained hashed-bag-of-words item tower against frozen all-MiniLM-L6-v2 (+ a
trained projection) and a no-text ablation, under the same split and two-tower training; JSON + a table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

COLUMNS = (("recall_at_k", "recall@k"), ("recall_vs_oracle", "vs oracle"), ("cold_recall_at_k", "cold recall"),
           ("cold_recall_vs_oracle", "cold vs oracle"), ("pop_recall_at_k", "recall +pop"),
           ("encode_ms_per_article_batch1", "ms/article (1)"), ("encode_ms_per_article_batched", "ms/article (batch)"),
           ("model_mb", "MB"), ("train_seconds", "train s"), ("text_precompute_seconds", "text s"))


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['world']}: recall@{report['k']} of {report['clicks']} dev clicks "
                        f"({report['cold_clicks']} on articles published after the training cut "
                        f"{report['training_cut']}), live pool")
    table.add_column("encoder")
    for _, header in COLUMNS:
        table.add_column(header, justify="right")
    rows = [(r["encoder"], r) for r in report["encoders"]]
    rows.append(("chance", {"recall_at_k": report["chance_recall_at_k"]}))
    if report["oracle"] is not None:
        rows.append(("oracle", report["oracle"]))
    for name, r in rows:
        table.add_row(name, *("-" if r.get(c) is None else f"{r[c]:.3f}" for c, _ in COLUMNS))
    Console(width=170).print(table)
    base = report["encoders"][0]["encoder"]
    for r in report["encoders"][1:]:
        d = r[f"vs_{base}"]
        typer.echo(f"{r['encoder']} - {base} (paired over the same clicks, +/- 1 s.e.): " + ", ".join(
            f"{k} {v['delta']:+.3f} +/- {v['se']:.3f}" for k, v in d.items() if v["se"] is not None))


def bench_encoders(world: Annotated[Path, typer.Option(help="A MIND directory: a synthetic world or real MIND.")]
                   = Path("var/worlds/small"),
                   out: Annotated[Path, typer.Option(help="Results directory.")] = Path("var/bench/encoders"),
                   encoders: Annotated[str, typer.Option(help="Comma separated, the first is the baseline: "
                                                              "hashed_bow, minilm, no_text.")]
                   = "hashed_bow,minilm,no_text",
                   tower_epochs: Annotated[int, typer.Option(help="Two-tower epochs (newsrec train: 2).")] = 2,
                   impressions: Annotated[int, typer.Option(help="Sampled dev impressions with a click.")] = 1000,
                   as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report too.")] = False
                   ) -> None:
    """Train the two towers once per item-tower text encoder and compare retrieval recall (all and brand-new
    articles), encode cost per article on CPU, model size and training time; writes bench_encoders.json."""
    from dataclasses import replace

    from recsys.encoder_compare import EncoderCompareConfig, compare_encoders

    cfg = EncoderCompareConfig()
    cfg = replace(cfg, encoders=tuple(e.strip() for e in encoders.split(",") if e.strip()),
                  retrieval=replace(cfg.retrieval, epochs=tower_epochs), impressions=impressions)
    try:
        report = compare_encoders(world, cfg)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_encoders.json").write_text(json.dumps(report, indent=2))
    if as_json:
        typer.echo(json.dumps(report))
    print_report(report)
    typer.echo(f"wrote {out / 'bench_encoders.json'}")


def register(app: typer.Typer) -> None:
    from newsrec.cli_serve import bench_app

    bench_app.command("encoders")(bench_encoders)
