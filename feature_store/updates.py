"""Feature updates as plans of primitive ops (push to a list, integer increment, decayed-counter increment) over the
one key scheme. Both stores execute the same plans: redis_store in one Lua call, memory_store in Python.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from feature_store import keys
from feature_store.base import (
    EXPECTED_HALF_LIVES_H,
    SHOWS_HALF_LIFE_H,
    ClickUpdate,
    FeatureUpdate,
    HistorySeed,
    ImpressionUpdate,
    StoreConfig,
)
from recsys.features import POPULARITY_HALF_LIVES_H, USER_TOPIC_HALF_LIVES_H


@dataclass(frozen=True)
class PushOp:
    """Push `values` one by one at the head ("L": the last pushed ends up first) or the tail ("R"), then keep
    the first `bound` elements."""

    key: str
    side: str
    values: tuple[str, ...]
    bound: int
    ttl_s: int


@dataclass(frozen=True)
class IncrOp:
    key: str
    field: str
    amount: int
    ttl_s: int


@dataclass(frozen=True)
class DecayOp:
    """Decayed-counter increments at the plan's time, as groups (t_field, ((field, half_life_s, w), ...)): the
    counters of a group share the last-update time `t_field`. One op per key: one read and one write of the hash."""

    key: str
    groups: tuple[tuple[str, tuple[tuple[str, float, float], ...]], ...]
    ttl_s: int


Op = PushOp | IncrOp | DecayOp


@dataclass(frozen=True)
class Plan:
    """Every op of one event, to apply atomically iff `dedup_key` is not yet set (then set it for dedup_ttl_s)."""

    dedup_key: str
    dedup_ttl_s: int
    t_s: float
    ops: tuple[Op, ...]


def decay_add(value: float, t_last: float | None, t: float, half_life_s: float, w: float) -> float:
    """A decayed counter's new value after adding w at t (its new last-update time is max(t_last, t))."""
    if t_last is None:
        return w
    if t >= t_last:
        return value * 2.0 ** (-(t - t_last) / half_life_s) + w
    return value + w * 2.0 ** (-(t_last - t) / half_life_s)  # a late event: decayed to t_last, which stays


def plan(update: FeatureUpdate, cfg: StoreConfig) -> Plan:
    """The ops of one update; raises ValueError on an update that cannot be applied."""
    builders = {ClickUpdate: _click, ImpressionUpdate: _impression, HistorySeed: _seed}
    if type(update) not in builders:
        raise TypeError(f"not a feature update: {type(update).__name__}")
    if not update.user_id:
        raise ValueError("user_id must be non-empty")
    return builders[type(update)](update, cfg)


def _check_time(t_s: float) -> float:
    t = float(t_s)
    if not math.isfinite(t):
        raise ValueError(f"event time must be finite, got {t_s!r}")
    return t


def _dedup(cfg: StoreConfig, event_id: str) -> str:
    if not event_id:
        raise ValueError("event_id must be non-empty")
    return keys.dedup_key(cfg.prefix, event_id)


def _user_topic_op(cfg: StoreConfig, user_id: str, kind: str, weights: dict[tuple[str, str], float]) -> DecayOp:
    """weights: (level, topic) -> w added to the user's `kind` counters of that topic at every half-life."""
    groups = tuple(
        (keys.user_topic_t_field(kind, level, topic),
         tuple((keys.user_topic_field(kind, level, topic, h), h * 3600.0, w) for h in USER_TOPIC_HALF_LIVES_H))
        for (level, topic), w in weights.items())
    return DecayOp(keys.user_topic_key(cfg.prefix, user_id), groups, cfg.user_ttl_s)


def _click(u: ClickUpdate, cfg: StoreConfig) -> Plan:
    if not (u.news_id and u.subcategory and u.category):
        raise ValueError("a click needs news_id, subcategory and category")
    p = cfg.prefix
    ops: list[Op] = [
        PushOp(keys.history_key(p, u.user_id), "L", (u.news_id,), cfg.history_len, cfg.user_ttl_s),
        IncrOp(keys.profile_key(p, u.user_id), keys.HISTORY_LEN, 1, cfg.user_ttl_s),
        DecayOp(keys.item_counter_key(p, u.news_id),
                ((keys.CLICKS_T, tuple((keys.clicks_field(h), h * 3600.0, 1.0) for h in POPULARITY_HALF_LIVES_H)),),
                cfg.item_ttl_s),
        _user_topic_op(cfg, u.user_id, "clicks", {("subcategory", u.subcategory): 1.0, ("category", u.category): 1.0}),
    ]
    return Plan(_dedup(cfg, u.event_id), cfg.dedup_ttl_s, _check_time(u.t_s), tuple(ops))


def _impression(u: ImpressionUpdate, cfg: StoreConfig) -> Plan:
    prior = u.position_prior
    if not prior:
        raise ValueError("position_prior must be non-empty (FeatureSpec.position_prior of the served model)")
    shows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # news_id -> [shows, expected]
    topics: dict[tuple[str, str], float] = defaultdict(float)        # (level, topic) -> expected clicks
    for news_id, subcategory, category, position in u.items:
        if not (news_id and subcategory and category) or int(position) < 0:
            raise ValueError(f"bad shown item {(news_id, subcategory, category, position)!r}")
        w = float(prior[min(int(position), len(prior) - 1)])
        shows[news_id][0] += 1.0
        shows[news_id][1] += w
        topics["subcategory", subcategory] += w
        topics["category", category] += w
    ops: list[Op] = []
    for news_id, (n, w) in shows.items():
        terms = ((keys.shows_field(SHOWS_HALF_LIFE_H), SHOWS_HALF_LIFE_H * 3600.0, n),
                 *((keys.expected_field(h), h * 3600.0, w) for h in EXPECTED_HALF_LIVES_H))
        ops.append(DecayOp(keys.item_counter_key(cfg.prefix, news_id), ((keys.SHOWS_T, terms),), cfg.item_ttl_s))
    if topics:  # an empty impression only sets its dedup mark
        ops.append(_user_topic_op(cfg, u.user_id, "expected", topics))
    return Plan(_dedup(cfg, u.event_id), cfg.dedup_ttl_s, _check_time(u.t_s), tuple(ops))


def _seed(u: HistorySeed, cfg: StoreConfig) -> Plan:
    if u.history_len < len(u.history):
        raise ValueError(f"history_len {u.history_len} < len(history) {len(u.history)}")
    p = cfg.prefix
    # At the tail: prior clicks stay below any click the stream applied before the seed.
    ops = (PushOp(keys.history_key(p, u.user_id), "R", tuple(u.history[:cfg.history_len]), cfg.history_len,
                  cfg.user_ttl_s),
           IncrOp(keys.profile_key(p, u.user_id), keys.HISTORY_LEN, int(u.history_len), cfg.user_ttl_s))
    return Plan(_dedup(cfg, u.event_id or f"seed-{u.user_id}"), cfg.dedup_ttl_s, 0.0, ops)
