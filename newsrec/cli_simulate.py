"""`newsrec simulate`: replay a world's events into Kafka (articles, impressions, clicks) at a chosen rate and
speed-up, with an optional breaking-news burst. Feeds the demo, the load tests and the freshness benchmark."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer


def kafka_bootstrap(bootstrap: str | None) -> str:
    """--bootstrap / KAFKA_BOOTSTRAP_SERVERS, else the broker `newsrec up` left running."""
    if bootstrap:
        return bootstrap
    from newsrec.services import running_endpoints

    endpoints = running_endpoints()
    if endpoints is None:
        typer.echo("error: no broker: pass --bootstrap, set KAFKA_BOOTSTRAP_SERVERS, or run `newsrec up`", err=True)
        raise typer.Exit(1)
    return endpoints.kafka_bootstrap


def world_end_offset(world: Path) -> float:
    """The clock offset `newsrec serve --world-end` uses for this world: its newest article's publish = now."""
    import time

    from recsys.catalogue import load_catalogue

    return float(load_catalogue(world).publish_s.max()) - time.time()


def simulate(
    world: Annotated[Path, typer.Option(help="A world directory (MIND format with news_meta.tsv).")],
    rate: Annotated[float, typer.Option(help="At most this many events per second (0: no cap).")] = 200.0,
    speedup: Annotated[float, typer.Option(help="World seconds per wall second (0: as fast as --rate allows).")]
    = 60.0,
    duration: Annotated[float, typer.Option(help="Stop after this many seconds.")] = 60.0,
    breaking: Annotated[int, typer.Option(help="Inject a burst of this many breaking stories (0: none).")] = 0,
    breaking_at: Annotated[float, typer.Option(help="Seconds into the run when the burst is published.")] = 5.0,
    breaking_subcategory: Annotated[str | None, typer.Option(help="The burst's topic (default: a random one).")]
    = None,
    world_end_clock: Annotated[bool, typer.Option(help="Stamp events on the clock of `serve --world-end`.")]
    = False,
    bootstrap: Annotated[str | None, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS", help="Broker host:port.")]
    = None,
    topic_prefix: Annotated[str, typer.Option(help="Prefix of every topic name.")] = "",
) -> None:
    """Replay the world as if it happened now; prints what was sent (JSON)."""
    from streaming.producer import EventPublisher, PublishError
    from streaming.settings import StreamSettings, Topics
    from streaming.simulate import Burst, SimConfig
    from streaming.simulate import simulate as run

    stream = StreamSettings(bootstrap_servers=kafka_bootstrap(bootstrap), topics=Topics(prefix=topic_prefix))
    burst = Burst(breaking, breaking_at, breaking_subcategory) if breaking > 0 else None
    cfg = SimConfig(world=world, rate=rate, speedup=speedup, duration_s=duration, burst=burst,
                    clock_offset_s=world_end_offset(world) if world_end_clock else 0.0)

    async def main() -> dict:
        publisher = EventPublisher(stream, client_id="newsrec-simulate")
        try:
            await publisher.start()
            return await run(cfg, stream, publisher)
        finally:
            await publisher.close()

    try:
        stats = asyncio.run(main())
    except (ValueError, PublishError) as exc:  # an unknown --breaking-subcategory; the broker down
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(stats))


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
