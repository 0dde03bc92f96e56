"""The online feature store contract: what serving reads (user features, item counters) and what the stream writes
(clicks, impressions), as a `FeatureStore` Protocol with frozen dataclasses. Implementations: redis_store, memory_store.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, Union, runtime_checkable

import numpy as np

DAY_S = 86_400
EXPECTED_HALF_LIVES_H = (6.0, 24.0)   # item expected clicks (coec_6h, coec_24h)
SHOWS_HALF_LIFE_H = 6.0


@dataclass(frozen=True)
class StoreConfig:
    """Where and how long state lives; shared by every implementation so they build the same updates."""

    prefix: str
    history_len: int = 50          # bound of the user's history list
    user_ttl_s: int = 30 * DAY_S   # refreshed on every write to a user's keys
    item_ttl_s: int = 7 * DAY_S    # item counters and item features; articles live ~2 days
    dedup_ttl_s: int = 7 * DAY_S   # must outlast the longest redelivery (consumer lag + retention replay)

    def __post_init__(self) -> None:
        if not self.prefix:
            raise ValueError("prefix must be non-empty")
        if self.history_len < 1:
            raise ValueError(f"history_len must be >= 1, got {self.history_len}")
        for name in ("user_ttl_s", "item_ttl_s", "dedup_ttl_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 s, got {getattr(self, name)}")


@dataclass(frozen=True)
class UserFeatures:
    """A reader's online features as of the read time. Decayed values are already decayed to that time.

    topic_clicks / topic_expected: (level "subcategory" | "category", half-life h) -> {topic name: value}; every
    (level, half-life) of USER_TOPIC_HALF_LIVES_H is present, topics never touched are absent (value 0).
    """

    user_id: str
    history: tuple[str, ...]     # news ids clicked, most recent first, at most StoreConfig.history_len
    history_len: int             # all clicks ever counted (seeded prior history + applied clicks), not bounded
    topic_clicks: dict[tuple[str, float], dict[str, float]]
    topic_expected: dict[tuple[str, float], dict[str, float]]

    def topic_counts(self, level: str, half_life_h: float, topics: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(clicks, expected) float64 arrays of shape (len(topics),) for candidates' topics at one level."""
        clicks, expected = self.topic_clicks[level, half_life_h], self.topic_expected[level, half_life_h]
        return (np.array([clicks.get(t, 0.0) for t in topics], dtype=np.float64),
                np.array([expected.get(t, 0.0) for t in topics], dtype=np.float64))


@dataclass(frozen=True)
class ItemCounters:
    """Decayed popularity counters of a batch of items as of the read time; every array has shape (n,), float64,
    row i for news_ids[i]; unknown items read 0."""

    news_ids: tuple[str, ...]
    clicks: dict[float, np.ndarray]            # popularity half-life h (POPULARITY_HALF_LIVES_H) -> clicks
    shows_6h: np.ndarray
    expected_clicks: dict[float, np.ndarray]   # half-life h (EXPECTED_HALF_LIVES_H) -> sum of position_prior[slot]

    def __post_init__(self) -> None:
        n = len(self.news_ids)
        arrays = [*self.clicks.values(), self.shows_6h, *self.expected_clicks.values()]
        if any(a.shape != (n,) for a in arrays):
            raise ValueError(f"ItemCounters arrays must all have shape ({n},)")


@dataclass(frozen=True)
class ItemFeatures:
    """An article's metadata as serving needs it; times are Unix seconds."""

    news_id: str
    category: str
    subcategory: str
    title: str
    publish_s: float
    expire_s: float


@dataclass(frozen=True)
class ClickUpdate:
    """A reader clicked an article at t_s (Unix seconds)."""

    event_id: str
    user_id: str
    news_id: str
    subcategory: str
    category: str
    t_s: float


@dataclass(frozen=True)
class ImpressionUpdate:
    """A reader was shown `items` (news_id, subcategory, category, 0-based position) at t_s; position_prior is the
    click rate by slot (the model's FeatureSpec.position_prior), slots past its end use its last value."""

    event_id: str
    user_id: str
    items: tuple[tuple[str, str, str, int], ...]
    t_s: float
    position_prior: tuple[float, ...]


@dataclass(frozen=True)
class HistorySeed:
    """A reader's clicks from before the log (most recent first) and their full count; applied once per user."""

    user_id: str
    history: tuple[str, ...]
    history_len: int
    event_id: str = field(default="")  # default: "seed-{user_id}"


FeatureUpdate = Union[ClickUpdate, ImpressionUpdate, HistorySeed]


@runtime_checkable
class FeatureStore(Protocol):
    """The online store. Reads are one round trip each and never retried (the caller owns the deadline).

    Writes are idempotent by event id: every update of one event and its dedup mark are applied atomically, once;
    a redelivered event changes nothing and reports False. Decayed counters keep (value, last-update time): an
    increment w at t makes value = value * 2^-((t - t_last)/hl) + w (an event older than t_last adds
    w * 2^-((t_last - t)/hl) instead); a read at now gives value * 2^-((now - t_last)/hl), i.e. the sum over applied
    events of w * 2^-((now - t_event)/hl) -- recsys.features.decayed_counts for events before now.
    A read earlier than t_last (clock skew) is taken at t_last: counters never grow with age.
    """

    config: StoreConfig

    async def start(self) -> None:
        """Connect and prepare; raises if the backend is unreachable. Optional: calls work without it."""
        ...

    async def get_user(self, user_id: str, now_s: float) -> UserFeatures: ...

    async def get_item_counters(self, news_ids: Sequence[str], now_s: float) -> ItemCounters: ...

    async def get_item_features(self, news_ids: Sequence[str]) -> list[ItemFeatures | None]: ...

    async def put_items(self, items: Sequence[ItemFeatures]) -> None:
        """Upsert metadata; each item's key expires item_ttl_s after its last put."""
        ...

    async def apply_updates(self, updates: Sequence[FeatureUpdate]) -> list[bool]:
        """Apply a batch in order, in one round trip; [i] is False if updates[i] was already applied.

        Each update is atomic with its dedup mark; the batch is not: after an error, some may have landed, and
        re-sending the whole batch is safe."""
        ...

    async def close(self) -> None: ...

    async def apply_click(self, event_id: str, user_id: str, news_id: str, subcategory: str, category: str,
                          t_s: float) -> bool:
        """History, history_len, item clicks and the reader's topic clicks; False if already applied."""
        return (await self.apply_updates([ClickUpdate(event_id, user_id, news_id, subcategory, category, t_s)]))[0]

    async def apply_impression(self, event_id: str, user_id: str, items: Sequence[tuple[str, str, str, int]],
                               t_s: float, position_prior: Sequence[float]) -> bool:
        """Item shows and expected clicks, the reader's topic expected clicks; False if already applied."""
        update = ImpressionUpdate(event_id, user_id, tuple(tuple(i) for i in items), t_s, tuple(position_prior))
        return (await self.apply_updates([update]))[0]

    async def seed_history(self, user_id: str, history: Sequence[str], history_len: int) -> bool:
        """Prior history (most recent first) pushed under the reader's later clicks; once per user."""
        return (await self.apply_updates([HistorySeed(user_id, tuple(history), history_len)]))[0]
