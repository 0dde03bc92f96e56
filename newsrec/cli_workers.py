"""`newsrec worker <name>`: the stream workers, one consumer-group member per process (run more for more
throughput), each serving /readyz and /metrics on 127.0.0.1 and finishing its batch on SIGTERM.

Settings come from NEWSREC_* (the API's names: NEWSREC_STREAM__*, NEWSREC_STORE__*, plus NEWSREC_CONSUMER__*);
options override them; without either, the services `newsrec up` started."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Stream workers (Kafka consumer groups): features, ...", no_args_is_help=True)

# Options every worker takes; a new worker command reuses them and adds its own.
Bootstrap = Annotated[str | None, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS",
                                               help="Kafka bootstrap servers. Default: `newsrec up`'s broker.")]
RedisUrl = Annotated[str | None, typer.Option(envvar="REDIS_URL", help="Default: `newsrec up`'s Redis.")]
Prefix = Annotated[str | None, typer.Option(help="Redis key prefix (default newsrec).")]
TopicPrefix = Annotated[str | None, typer.Option(help="Prefix of every topic name (tenants, tests).")]
Group = Annotated[str | None, typer.Option(help="Consumer group id (default newsrec-<worker>).")]
MetricsPort = Annotated[int | None, typer.Option(help="Port of /readyz and /metrics on 127.0.0.1 (0: any free).")]
LogLevel = Annotated[str, typer.Option(help="Logging level.")]


def stream_overrides(bootstrap_servers: str | None, redis_url: str | None, prefix: str | None,
                     topic_prefix: str | None, group: str | None, metrics_port: int | None) -> dict:
    """Nested settings overrides from the common options (pydantic-settings merges them over NEWSREC_*)."""
    need_bootstrap = bootstrap_servers is None and "NEWSREC_STREAM__BOOTSTRAP_SERVERS" not in os.environ
    need_redis = redis_url is None and "NEWSREC_STORE__REDIS_URL" not in os.environ
    if need_bootstrap or need_redis:
        from newsrec.services import running_endpoints

        if (endpoints := running_endpoints()) is None:
            typer.echo("error: no broker or Redis configured: pass --bootstrap-servers / --redis-url, set "
                       "KAFKA_BOOTSTRAP_SERVERS / REDIS_URL, or run `newsrec up`", err=True)
            raise typer.Exit(1)
        bootstrap_servers = bootstrap_servers if not need_bootstrap else endpoints.kafka_bootstrap
        redis_url = redis_url if not need_redis else endpoints.redis_url
    out: dict = {"stream": {}, "store": {}, "consumer": {}}
    for section, key, value in (("stream", "bootstrap_servers", bootstrap_servers), ("store", "redis_url", redis_url),
                                ("store", "prefix", prefix), ("consumer", "group_id", group),
                                ("consumer", "metrics_port", metrics_port)):
        if value is not None:
            out[section][key] = value
    if topic_prefix is not None:
        out["stream"]["topics"] = {"prefix": topic_prefix}
    return {k: v for k, v in out.items() if v}


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python narrates every connection at INFO


@app.command("features")
def features(bootstrap_servers: Bootstrap = None, redis_url: RedisUrl = None, prefix: Prefix = None,
             topic_prefix: TopicPrefix = None, group: Group = None, metrics_port: MetricsPort = None,
             registry: Annotated[Path | None, typer.Option(help="Model registry (its current version's position "
                                                                "prior weighs impressions).")] = None,
             log_level: LogLevel = "info") -> None:
    """Apply clicks and impressions to Redis: history, profile, popularity counters; once per event id."""
    from streaming.consumer import run_worker
    from streaming.feature_updater import FeatureUpdaterSettings, feature_updater_consumer

    _logging(log_level)
    overrides = stream_overrides(bootstrap_servers, redis_url, prefix, topic_prefix, group, metrics_port)
    if registry is not None:
        overrides["registry"] = registry
    run_worker(feature_updater_consumer(FeatureUpdaterSettings(**overrides)))


@app.command("articles")
def articles(bootstrap_servers: Bootstrap = None, redis_url: RedisUrl = None, prefix: Prefix = None,
             topic_prefix: TopicPrefix = None, group: Group = None, metrics_port: MetricsPort = None,
             registry: Annotated[Path | None, typer.Option(help="Model registry (its current version's item tower "
                                                                "encodes).")] = None,
             snapshot: Annotated[Path | None, typer.Option(help="Write the item-vectors snapshot here (replicas "
                                                                "start from it).")] = None,
             log_level: LogLevel = "info") -> None:
    """Encode new articles with the item tower: item features to Redis, vectors to item-vectors for every replica."""
    from streaming.article_worker import ArticleWorkerSettings, run_article_worker

    _logging(log_level)
    overrides = stream_overrides(bootstrap_servers, redis_url, prefix, topic_prefix, group, metrics_port)
    if registry is not None:
        overrides["registry"] = registry
    if snapshot is not None:
        overrides.setdefault("stream", {})["vector_snapshot"] = snapshot
    run_article_worker(ArticleWorkerSettings(**overrides))


@app.command("trainer")
def trainer(bootstrap_servers: Bootstrap = None, redis_url: RedisUrl = None, prefix: Prefix = None,
            topic_prefix: TopicPrefix = None, group: Group = None, metrics_port: MetricsPort = None,
            registry: Annotated[Path | None, typer.Option(help="Model registry: trains from its current version, "
                                                               "publishes and promotes children there.")] = None,
            catalogue: Annotated[Path | None, typer.Option(help="A world whose articles it knows from the start.")]
            = None,
            log_level: LogLevel = "info") -> None:
    """Fine-tune the current version's ranker on impressions + clicks; promote a child only if it does not regress
    on the newest held-out impressions, then announce it on model-updates (NEWSREC_TRAINING__* tunes it)."""
    from streaming.consumer import run_worker
    from streaming.trainer_worker import TrainerSettings, trainer_consumer

    _logging(log_level)
    overrides = stream_overrides(bootstrap_servers, redis_url, prefix, topic_prefix, group, metrics_port)
    if registry is not None:
        overrides["registry"] = registry
    if catalogue is not None:
        overrides["catalogue_dir"] = catalogue
    run_worker(trainer_consumer(TrainerSettings(**overrides)))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="worker")
