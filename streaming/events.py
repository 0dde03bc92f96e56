"""The events on the stream, version 1: one pydantic model per topic, JSON on the wire, validated where they enter.

Any Kafka client can produce them (the README documents each schema). Every event carries `v` (schema version),
`type`, a globally unique `event_id` (redelivery and retries are deduplicated by it) and `time_s`, the event time in
Unix seconds. Consumers ignore unknown fields, so producers may add fields without a version bump.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from data.schema import NEWS_ID_PATTERN, USER_ID_PATTERN

SCHEMA_VERSION = 1
EVENT_ID = r"^[A-Za-z0-9_.:-]+$"
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN.pattern)]
NewsId = Annotated[str, Field(pattern=NEWS_ID_PATTERN.pattern)]
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\t\n\r]+$")]
MAX_IMPRESSION_ITEMS = 100
MAX_VECTOR_DIM = 4096


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    v: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(min_length=1, max_length=128, pattern=EVENT_ID)
    time_s: float = Field(ge=0, description="event time, Unix seconds")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class ClickEvent(_Event):
    """Topic `clicks`, key user_id: a reader opened an article."""
    type: Literal["click"] = "click"
    user_id: UserId
    news_id: NewsId
    impression_id: str | None = Field(default=None, max_length=128)
    position: int | None = Field(default=None, ge=0, lt=MAX_IMPRESSION_ITEMS)


class ImpressionEvent(_Event):
    """Topic `impressions`, key user_id: a reader was shown `news_ids` in slot order."""
    type: Literal["impression"] = "impression"
    user_id: UserId
    news_ids: list[NewsId] = Field(min_length=1, max_length=MAX_IMPRESSION_ITEMS)
    impression_id: str | None = Field(default=None, max_length=128)


class ArticleEvent(_Event):
    """Topic `articles`, key news_id: an article was published (time_s) and may be shown until expire_s."""
    type: Literal["article"] = "article"
    news_id: NewsId
    category: Label
    subcategory: Label
    title: str = Field(min_length=1, max_length=1_000, pattern=r"^[^\t\n\r]+$")
    abstract: str = Field(default="", max_length=5_000, pattern=r"^[^\t\n\r]*$")
    expire_s: float = Field(ge=0)


class ItemVectorEvent(_Event):
    """Topic `item-vectors`, key news_id: the item tower's vector of an article, for every serving replica's index.

    It repeats the article's content so a replica serving another item-tower version can re-encode it itself."""
    type: Literal["item_vector"] = "item_vector"
    article: ArticleEvent
    vector: list[float] = Field(min_length=1, max_length=MAX_VECTOR_DIM)
    model_version: str = Field(min_length=1, max_length=128)


class ModelUpdateEvent(_Event):
    """Topic `model-updates`: a model version was promoted in the registry; serving replicas hot-swap to it."""
    type: Literal["model_update"] = "model_update"
    version: str = Field(min_length=1, max_length=128)
    parent: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class DeadLetter(_Event):
    """Topic `dead-letter`: a record a worker could not apply, with where it came from and why."""
    type: Literal["dead_letter"] = "dead_letter"
    source_topic: str
    partition: int
    offset: int
    key: str | None
    value: str = Field(description="the raw record, as UTF-8 with replacement, at most 10k characters")
    reason: str
    worker: str


StreamEvent = Annotated[Union[ClickEvent, ImpressionEvent, ArticleEvent, ItemVectorEvent, ModelUpdateEvent,
                              DeadLetter], Field(discriminator="type")]
_ADAPTER: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


class BadEvent(ValueError):
    """A record that is not a valid event; its message is the reason that goes to the dead-letter topic."""


def parse_event(raw: bytes | str, expect: tuple[type[_Event], ...] | None = None) -> _Event:
    """Decode one record's value; raises BadEvent with a one-line reason for anything malformed or unexpected."""
    try:
        event = _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise BadEvent(f"{where}: {first['msg']}") from None
    if expect is not None and not isinstance(event, expect):
        raise BadEvent(f"unexpected event type {event.type!r} on this topic")
    return event


def dead_letter(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str,
                worker: str, now_s: float) -> DeadLetter:
    text = (value or b"").decode("utf-8", errors="replace")[:10_000]
    return DeadLetter(event_id=f"dlq-{topic}-{partition}-{offset}", time_s=now_s, source_topic=topic,
                      partition=partition, offset=offset, key=None if key is None else key.decode("utf-8", "replace"),
                      value=text, reason=reason[:1_000], worker=worker)
