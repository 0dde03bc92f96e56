"""Settings every stream worker shares (broker, Redis, consumer loop, model registry), from NEWSREC_* with the API's
names (NEWSREC_STREAM__*, NEWSREC_STORE__*), so one environment configures the API and all its workers."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.registry import default_registry_dir
from streaming.consumer import ConsumerSettings
from streaming.settings import StreamSettings


class RedisSettings(BaseModel):
    """The same names as the API's store settings (NEWSREC_STORE__REDIS_URL, NEWSREC_STORE__PREFIX)."""

    model_config = ConfigDict(frozen=True)
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "newsrec"
    socket_timeout_ms: float = 5_000.0   # a batch is one pipeline of up to max_records scripts
    connect_timeout_ms: float = 1_000.0


class WorkerSettings(BaseSettings):
    """Subclass per worker and add its own fields. Environment: NEWSREC_STREAM__*, NEWSREC_STORE__*,
    NEWSREC_CONSUMER__*, NEWSREC_REGISTRY."""

    model_config = SettingsConfigDict(env_prefix="NEWSREC_", env_nested_delimiter="__", frozen=True)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    store: RedisSettings = Field(default_factory=RedisSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    registry: Path = Field(default_factory=default_registry_dir)
