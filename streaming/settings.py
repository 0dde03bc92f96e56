"""Stream settings shared by the API's producer and every worker: where the broker is, the topic names, the client
settings. One frozen pydantic-settings object (NEWSREC_STREAM__* in the API, NEWSREC_* in workers)."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# Measured on the local Tansu broker (ARCHITECTURE.md): a group joins in ~3 s with these, ~23 s with the defaults.
from newsrec.service_clients import CONSUMER_GROUP_TIMEOUTS as LOCAL_GROUP_TIMEOUTS


class Topics(BaseModel):
    """Topic names; `prefix` lets tests and tenants share one broker."""
    model_config = ConfigDict(frozen=True)
    prefix: str = ""
    clicks: str = "clicks"
    impressions: str = "impressions"
    articles: str = "articles"
    item_vectors: str = "item-vectors"
    model_updates: str = "model-updates"
    dead_letter: str = "dead-letter"

    def name(self, topic: str) -> str:
        return f"{self.prefix}{getattr(self, topic)}"

    def all(self) -> list[str]:
        return [self.name(t) for t in ("clicks", "impressions", "articles", "item_vectors", "model_updates",
                                       "dead_letter")]


class StreamSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    bootstrap_servers: str = "127.0.0.1:9092"
    topics: Topics = Field(default_factory=Topics)
    partitions: int = Field(default=4, ge=1)       # clicks/impressions/articles: the consumer-group parallelism
    replication: int = Field(default=1, ge=1)
    session_timeout_ms: int = LOCAL_GROUP_TIMEOUTS["session_timeout_ms"]
    heartbeat_interval_ms: int = LOCAL_GROUP_TIMEOUTS["heartbeat_interval_ms"]
    max_poll_interval_ms: int = LOCAL_GROUP_TIMEOUTS["max_poll_interval_ms"]
    produce_timeout_ms: int = 5_000      # POST /v1/events waits at most this for the broker's ack
    linger_ms: int = 2                   # small batches: the API waits for the ack anyway
    # item-vectors folded into one file by the article worker; serving replicas start from it, then the topic
    vector_snapshot: Path | None = None

    def group_settings(self) -> dict:
        return {"session_timeout_ms": self.session_timeout_ms, "heartbeat_interval_ms": self.heartbeat_interval_ms,
                "max_poll_interval_ms": self.max_poll_interval_ms}
