"""`newsrec serve` (the API under uvicorn) and `newsrec features materialize` (a world into Redis)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

features_app = typer.Typer(help="The online feature store.", no_args_is_help=True)


def _redis_url(redis_url: str | None) -> str:
    if redis_url:
        return redis_url
    from newsrec.services import running_endpoints

    endpoints = running_endpoints()
    if endpoints is None:
        typer.echo("error: no Redis: pass --redis-url, set REDIS_URL, or run `newsrec up`", err=True)
        raise typer.Exit(1)
    return endpoints.redis_url


@features_app.command("materialize")
def materialize(world: Annotated[Path, typer.Option(help="A MIND world directory.")],
                redis_url: Annotated[str | None, typer.Option(envvar="REDIS_URL", help="Default: `newsrec up`'s.")]
                = None,
                prefix: Annotated[str, typer.Option(help="Key prefix.")] = "newsrec") -> None:
    """Replay a world's log into Redis: articles, prior histories, every impression and click (idempotent)."""
    from feature_store.materialize import materialize_world

    stats = materialize_world(world, _redis_url(redis_url), prefix)
    typer.echo(", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items()))


def serve(catalogue: Annotated[Path | None, typer.Option(help="World whose articles seed the index.")] = None,
          host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Listen port.")] = 8000,
          workers: Annotated[int, typer.Option(help="Worker processes (2 cores: 2).")] = 1,
          registry: Annotated[Path, typer.Option(help="Model registry.")] = Path("var/registry"),
          backend: Annotated[str, typer.Option(help="onnxruntime | torch")] = "onnxruntime",
          redis_url: Annotated[str | None, typer.Option(envvar="REDIS_URL", help="Default: `newsrec up`'s.")] = None,
          prefix: Annotated[str, typer.Option(help="Feature-store key prefix.")] = "newsrec",
          world_end: Annotated[bool, typer.Option(help="Run the clock at the catalogue's end (demo worlds).")]
          = False) -> None:
    """Serve /v1/recommend, /v1/events, /healthz, /readyz, /metrics and /docs with uvicorn."""
    import uvicorn

    env = {"NEWSREC_STORE__REDIS_URL": _redis_url(redis_url), "NEWSREC_STORE__PREFIX": prefix,
           "NEWSREC_MODEL__REGISTRY": str(registry.resolve()), "NEWSREC_MODEL__BACKEND": backend,
           "NEWSREC_WORLD_END": str(world_end).lower(), "OMP_NUM_THREADS": "1"}  # FAISS: one thread per worker
    if catalogue is not None:
        env["NEWSREC_CATALOGUE_DIR"] = str(catalogue.resolve())
    os.environ.update(env)
    # access_log off: at log level warning its lines are dropped anyway, after their arguments were formatted
    # http: uvicorn's httptools protocol, plus admission control's sheds answered as soon as headers are parsed
    uvicorn.run("serving.main:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, http="serving.fast_shed:FastShedProtocol")


bench_app = typer.Typer(help="Benchmarks that write JSON + PNG and compare against a baseline in the same run.",
                        no_args_is_help=True)


@bench_app.command("serve")
def bench_serve(world: Annotated[Path, typer.Option(help="A world materialized into Redis for the run.")],
                registry: Annotated[Path, typer.Option(help="Model registry (its current version is served).")]
                = Path("var/registry"),
                out: Annotated[Path, typer.Option(help="Results directory.")] = Path("var/bench/serve"),
                live_articles: Annotated[int, typer.Option(help="Live pool size (topped up synthetically).")]
                = 50_000,
                rates: Annotated[str, typer.Option(help="Offered loads, comma separated (req/s).")]
                = "100,200,300,500,700,900",
                step_s: Annotated[float, typer.Option(help="Seconds per load step.")] = 8.0,
                systems: Annotated[str, typer.Option(help="Comma separated, from: optimized, optimized_batching, "
                                                          "optimized_batching_ranker, optimized_1worker, "
                                                          "batching_off_loop (the surge options), naive, "
                                                          "exact_fp32_batching (before IVF and the int8 ranker).")]
                = "optimized,optimized_batching,optimized_batching_ranker,optimized_1worker,naive",
                step_tries: Annotated[int, typer.Option(help="Runs of a step at most, while other processes keep "
                                                             "more than --max-other-cores busy (shared machines).")]
                = 3,
                max_other_cores: Annotated[float, typer.Option(help="See --step-tries.")] = 0.25) -> None:
    """Latency against offered load for the optimized service (2 workers; with micro-batching; on 1 worker) and the
    naive baseline; JSON + PNG in --out."""
    from loadtest.bench_serve import BenchConfig, run

    cfg = BenchConfig(world=world, registry=registry, out=out, live_articles=live_articles,
                      rates=tuple(float(r) for r in rates.split(",")), step_s=step_s,
                      systems=tuple(s.strip() for s in systems.split(",")), step_tries=step_tries,
                      max_other_cores=max_other_cores)
    results = run(cfg)
    for name, r in results["systems"].items():
        cpu = r["cpu_ms_per_request"]
        typer.echo(f"{name} ({r['workers']} worker(s)): max RPS with p99 < 100 ms = {r['max_rps_p99_under_100ms']:.0f}"
                   f", saturation {r['saturation_rps']:.0f} RPS"
                   f"; CPU ms/request server {cpu['server']:.2f}, redis {cpu['redis'] or 0:.2f}, load generator "
                   f"{cpu['load_generator']:.2f}; stages (ms) "
                   + ", ".join(f"{k} {v:.2f}" for k, v in r["stage_ms"].items()))
        search = ("exact search" if r.get("ivf_nprobe") is None else
                  f"IVF nprobe {r['ivf_nprobe']:.0f}, recall@500 vs exact {r['ivf_recall_at_500']}")
        typer.echo(f"  pool {r.get('pool')}, {search}; model {r.get('model', {}).get('version')} on "
                   f"{r.get('model', {}).get('backend')}")
        for s in r["steps"]:
            typer.echo(f"  offered {s['offered_rps']:>5.0f}  achieved {s['achieved_rps']:>6.1f}  p50 {s['p50_ms']:7.1f}"
                       f"  p99 {s['p99_ms']:8.1f}  errors {s['errors']}  shed {s['shed']}"
                       f"  server CPU {s['server_cpu_ms_per_request']:.2f} ms/req"
                       f"  other processes {s.get('other_processes_cores', 0):.2f} cores ({s.get('tries', 1)} runs)")
    for name, c in results.get("comparison", {}).items():
        ratio = "n/a" if c["max_rps_ratio"] is None else f"{c['max_rps_ratio']:.1f}x"
        typer.echo(f"{name} vs naive: max RPS {ratio}, server CPU per request {c['cpu_ratio']:.2f}x")
    for name, m in results.get("micro_batching", {}).items():
        typer.echo(f"{name} vs {m['against']}: max RPS within the SLA {m['max_rps_ratio'] or 0:.2f}x, saturation "
                   f"{m['saturation_ratio'] or 0:.2f}x, CPU per request {m['cpu_ratio']:.2f}x, pays: {m['pays']}")
    typer.echo(f"wrote {out / 'bench_serve.json'} and {out / 'bench_serve.png'}")


@bench_app.command("freshness")
def bench_freshness(world: Annotated[Path, typer.Option(help="A world (materialized into a fresh local Redis).")],
                    registry: Annotated[Path, typer.Option(help="Model registry (its current version is served).")]
                    = Path("var/registry"),
                    out: Annotated[Path, typer.Option(help="Results directory.")] = Path("var/bench/freshness"),
                    articles: Annotated[int, typer.Option(help="Articles to publish, one at a time.")] = 100,
                    clicks: Annotated[int, typer.Option(help="Clicks to send, one at a time (0: skip).")] = 50,
                    background_eps: Annotated[float, typer.Option(help="Simulator replay rate meanwhile (events/s).")]
                    = 0.0) -> None:
    """Seconds from article publish to retrievable on two replicas, and from a click to the next answer; p50/p99."""
    from loadtest.bench_freshness import FreshnessConfig, run

    r = run(FreshnessConfig(world=world, registry=registry, out=out, articles=articles, clicks=clicks,
                            background_eps=background_eps))
    for key, label in (("article", "publish -> retrievable on both replicas"), ("click", "click -> next answer")):
        part = r[key]
        if "skipped" in part:
            typer.echo(f"{label}: skipped ({part['skipped']})")
            continue
        st = part["both_replicas"] if key == "article" else part["click_to_next"]
        typer.echo(f"{label}: p50 {st['p50_s']:.3f} s, p99 {st['p99_s']:.3f} s, max {st['max_s']:.3f} s "
                   f"(n={st['n']}; target p99 <= {part['target_p99_s']:g} s: {'met' if part['met'] else 'NOT met'})")
    typer.echo(f"wrote {out / 'bench_freshness.json'} and {out / 'bench_freshness.png'}")


@bench_app.command("drift")
def bench_drift(world: Annotated[Path, typer.Option(help="A synthetic world (its truth scores every answer).")]
                = Path("var/worlds/small"),
                out: Annotated[Path, typer.Option(help="Results directory.")] = Path("var/bench/drift"),
                speedup: Annotated[float, typer.Option(help="World seconds per wall second.")] = 15.0,
                pre_min: Annotated[float, typer.Option(help="World minutes before each event.")] = 20.0,
                post_min: Annotated[float, typer.Option(help="World minutes after each event.")] = 60.0,
                step_min: Annotated[float, typer.Option(help="World minutes between measurements.")] = 1.0,
                readers: Annotated[int, typer.Option(help="At most this many of the readers who read in each "
                                                          "measured minute are asked.")] = 60,
                events: Annotated[str, typer.Option(help="Comma separated event names (interest_shift, "
                                                         "breaking_<i>); default: the shift and the nearest "
                                                         "breaking news.")] = "",
                start_margin: Annotated[float | None, typer.Option(help="Wall seconds for the stack to start "
                                                                        "(default: from the store's size).")] = None,
                retrieval_epochs: Annotated[int, typer.Option(help="Starting model: two-tower epochs.")] = 1,
                ranker_epochs: Annotated[int, typer.Option(help="Starting model: ranker epochs.")] = 2) -> None:
    """nDCG@10 and CTR through the world's interest shift and breaking news: online trainer vs streamed features
    only vs fully frozen, on the real stack, scored with the ground truth; JSON + PNG in --out."""
    from loadtest.bench_drift import DriftConfig, run

    r = run(DriftConfig(world=world, out=out, speedup=speedup, pre_min=pre_min, post_min=post_min,
                        step_min=step_min, readers=readers, events=tuple(e for e in events.split(",") if e),
                        start_margin_s=start_margin, retrieval_epochs=retrieval_epochs, ranker_epochs=ranker_epochs))
    for w in r["windows"]:
        t = w["trainer"]
        typer.echo(f"window {w['window']['start_s'] / 3600:.2f}-{w['window']['end_s'] / 3600:.2f} h: trainer "
                   f"{t.get('promotions', 0):.0f} promotions, {t.get('rows_trained', 0):.0f} rows in "
                   f"{t.get('train_seconds', 0):.1f} s, first promotion "
                   f"{t.get('first_promotion_delay_seconds', float('nan')):.1f} s after enough data")
        for name, per in w["summary"].items():
            for s in (*r["systems"], *([r["ceiling"]] if r.get("ceiling") in per else [])):
                m = per[s]
                if not m.get("measured"):
                    typer.echo(f"  {name} {s}: not measured")
                    continue
                f5, inf = m.get("first5_ndcg10"), m.get("post_ndcg10_informed_readers")
                typer.echo(f"  {name} {s:>17}: pre nDCG@10 {m['pre_ndcg10']:.4f} CTR {m['pre_ctr']:.4f} | post "
                           f"nDCG@10 {m['post_ndcg10']:.4f} CTR {m['post_ctr']:.4f} | first 5 min nDCG@10 "
                           f"{'-' if f5 is None else f'{f5:.4f}'} | readers whose new interests the stream carried "
                           f"{'-' if inf is None else f'{inf:.4f}'} | longest below 90% "
                           f"{m['longest_below_90pct_min']:.0f} min (target <= 5: "
                           f"{'met' if m['recovery_target_met'] else 'NOT met'})"
                           + (" [not served: the best any system could know]" if s == r.get("ceiling") else ""))
                if (c := m.get("share_of_ceiling", {})).get("measured"):
                    typer.echo(f"  {name} {s:>17}: share of the ceiling: {c['pre']:.3f} before, {c['first5']:.3f} in "
                               f"the first 5 min ({c['first5_of_pre']:.0%} of before), below 90% of before in "
                               f"{c['minutes_below_90pct_of_pre']} of {c['minutes_after']} minutes after")
            if "online_beats_both" in per:
                typer.echo(f"  {name}: online beats both frozen systems: {per['online_beats_both']}")
    typer.echo(f"wrote {out / 'bench_drift.json'} and {out / 'bench_drift.png'}")


@bench_app.command("load")
def bench_load(world: Annotated[Path, typer.Option(help="A world (materialized into a fresh local Redis).")]
               = Path("var/worlds/tiny"),
               registry: Annotated[Path, typer.Option(help="Model registry (its current version is served).")]
               = Path("var/registry"),
               out: Annotated[Path, typer.Option(help="Results directory.")] = Path("var/bench/load"),
               systems: Annotated[str, typer.Option(help="Comma separated, from: optimized, naive, "
                                                         "optimized_off_loop (the surge options always on), "
                                                         "optimized_on_loop (never on).")]
               = "optimized,naive",
               over_capacity: Annotated[float, typer.Option(help="Surge peak offered load / measured C.")] = 5.0
               ) -> None:
    """The stack under Locust: a ramp finds capacity C, then a breaking-news surge at 5x C; the server's /metrics
    scraped each second; optimized vs naive. JSON, CSV, PNG and a Markdown summary in --out."""
    import sys

    from loadtest.bench_load import LoadConfig, run

    r = run(LoadConfig(world=world, registry=registry, out=out, systems=tuple(s.strip() for s in systems.split(",")),
                       surge_over_capacity=over_capacity), command=" ".join(["newsrec", *sys.argv[1:]]))
    for line in r["log"]:
        typer.echo(line)
    typer.echo((out / "bench_load.md").read_text())


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
    app.add_typer(features_app, name="features")
    app.command("serve")(serve)
