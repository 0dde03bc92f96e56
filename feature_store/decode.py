"""Raw stored values (hash fields as str or numbers) -> UserFeatures / ItemCounters decayed to the read time.
The read half of the decayed counters; both stores call it on what they fetched.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from feature_store import keys
from feature_store.base import (
    EXPECTED_HALF_LIVES_H,
    SHOWS_HALF_LIFE_H,
    ItemCounters,
    ItemFeatures,
    UserFeatures,
)
from recsys.features import POPULARITY_HALF_LIVES_H, USER_TOPIC_HALF_LIVES_H

# HMGET order of an item counter hash: [clicks t, clicks per half-life..., shows t, shows 6h, expected per hl...]
ITEM_COUNTER_FIELDS = (keys.CLICKS_T, *(keys.clicks_field(h) for h in POPULARITY_HALF_LIVES_H), keys.SHOWS_T,
                       keys.shows_field(SHOWS_HALF_LIFE_H), *(keys.expected_field(h) for h in EXPECTED_HALF_LIVES_H))
_N_CLICKS = len(POPULARITY_HALF_LIVES_H)


def decay_factor(now_s: float | np.ndarray, t_last: float | np.ndarray, half_life_h: float) -> float | np.ndarray:
    """2^-((now - t_last)/hl), with a read before t_last (clock skew) taken at t_last."""
    return 2.0 ** (-np.maximum(np.subtract(now_s, t_last), 0.0) / (half_life_h * 3600.0))


# (field head, level code) of a user-topic field -> (kind, level, half-life h or None for a last-update time):
# a reader's hash has ~100 fields with ~12 distinct heads, so they are parsed once per process
_TOPIC_FIELD_HEADS: dict[tuple[str, str], tuple[str, str, float | None]] = {}


def _topic_field_head(head: str, level_code: str) -> tuple[str, str, float | None]:
    kind, level, _, tag = keys.parse_user_topic_field(f"{head}|{level_code}|")
    meta = _TOPIC_FIELD_HEADS[head, level_code] = (kind, level, None if tag == "t" else float(tag))
    return meta


def user_features(user_id: str, history: Sequence[str], profile: Mapping, topics: Mapping, now_s: float
                  ) -> UserFeatures:
    """history: the stored list; profile, topics: the stored hashes (field -> value), empty for an unknown user."""
    t_last: dict[tuple[str, str, str], float] = {}
    values: list[tuple[str, str, str, float, float]] = []
    heads = _TOPIC_FIELD_HEADS
    for field, raw in topics.items():
        head, level_code, topic = field.split("|", 2)  # keys.user_topic_field's layout
        kind, level, h = heads.get((head, level_code)) or _topic_field_head(head, level_code)
        if h is None:
            t_last[kind, level, topic] = float(raw)
        else:
            values.append((kind, level, topic, h, float(raw)))
    out: dict[str, dict[tuple[str, float], dict[str, float]]] = {
        kind: {(level, h): {} for level in keys.USER_TOPIC_LEVELS for h in USER_TOPIC_HALF_LIVES_H}
        for kind in ("clicks", "expected")}
    for kind, level, topic, h, v in values:
        if (level, h) in out[kind]:  # a half-life no longer in the spec is ignored until its key expires
            age_s = max(now_s - t_last.get((kind, level, topic), now_s), 0.0)
            out[kind][level, h][topic] = v * 2.0 ** (-age_s / (h * 3600.0))
    return UserFeatures(user_id=user_id, history=tuple(history), history_len=int(profile.get(keys.HISTORY_LEN, 0)),
                        topic_clicks=out["clicks"], topic_expected=out["expected"])


def item_counters(news_ids: Sequence[str], rows: Sequence[Sequence], now_s: float) -> ItemCounters:
    """rows[i]: the values of ITEM_COUNTER_FIELDS for news_ids[i] (None where missing)."""
    if len(rows) != len(news_ids):
        raise ValueError(f"{len(rows)} counter rows for {len(news_ids)} news ids")
    raw = np.array([[np.nan if v is None else float(v) for v in row] for row in rows], dtype=np.float64)
    raw = raw.reshape(len(news_ids), len(ITEM_COUNTER_FIELDS))
    value = np.nan_to_num(raw, nan=0.0)
    times = np.where(np.isnan(raw), now_s, raw)  # a missing time goes with missing values (0): any factor works
    clicks_t, shows_t = times[:, 0], times[:, _N_CLICKS + 1]
    clicks = {h: value[:, 1 + j] * decay_factor(now_s, clicks_t, h) for j, h in enumerate(POPULARITY_HALF_LIVES_H)}
    s = _N_CLICKS + 2
    shows = value[:, s] * decay_factor(now_s, shows_t, SHOWS_HALF_LIFE_H)
    expected = {h: value[:, s + 1 + j] * decay_factor(now_s, shows_t, h) for j, h in enumerate(EXPECTED_HALF_LIVES_H)}
    return ItemCounters(news_ids=tuple(news_ids), clicks=clicks, shows_6h=shows, expected_clicks=expected)


def item_features_fields(item: ItemFeatures) -> dict[str, str]:
    """The stored hash of an item's metadata (fields keys.ITEM_FEATURE_FIELDS)."""
    return {"category": item.category, "subcategory": item.subcategory, "title": item.title,
            "publish_s": repr(float(item.publish_s)), "expire_s": repr(float(item.expire_s))}


def item_features(news_id: str, fields: Mapping) -> ItemFeatures | None:
    """None for an unknown (or expired) item."""
    if not fields:
        return None
    return ItemFeatures(news_id=news_id, category=fields["category"], subcategory=fields["subcategory"],
                        title=fields["title"], publish_s=float(fields["publish_s"]),
                        expire_s=float(fields["expire_s"]))
