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
    uvicorn.run("serving.main:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level="warning")


def register(app: typer.Typer) -> None:
    app.add_typer(features_app, name="features")
    app.command("serve")(serve)
