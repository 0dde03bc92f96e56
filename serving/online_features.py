"""Ranker inputs at request time, from the online store's reads: the serving twin of recsys.ranking_data.

Both end in recsys.features.ranker_features, so the model sees the same features it was trained on; a test
replays a logged impression through both paths and compares them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feature_store.base import ItemCounters, UserFeatures
from recsys.features import USER_TOPIC_HALF_LIVES_H, FeatureSpec, RankerInputs, ranker_features


@dataclass(frozen=True)
class Candidates:
    """What the request path knows about its candidates from the in-process item table; shape (n,) each."""

    news_ids: tuple[str, ...]
    vectors: np.ndarray        # (n, D) item-tower vectors
    subcategory: np.ndarray    # str
    category: np.ndarray       # str
    publish_s: np.ndarray      # Unix seconds


def _share(history_labels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Share of the history whose label equals each candidate's (unknown history items count, never match)."""
    n = max(history_labels.size, 1)
    values, counts = np.unique(history_labels, return_counts=True)
    lookup = dict(zip(values.tolist(), counts.tolist()))
    return np.array([lookup.get(x, 0) for x in labels.tolist()], dtype=np.float64) / n


def online_ranker_features(spec: FeatureSpec, user: UserFeatures, user_vec: np.ndarray, cand: Candidates,
                           counters: ItemCounters, history_subcategory: np.ndarray,
                           history_category: np.ndarray, now_s: float, positions: np.ndarray | None = None
                           ) -> np.ndarray:
    """(n, F) features for one reader's candidates at `now_s`.

    history_*: labels of the reader's stored history (user.history order; "" for an article the item table no
    longer knows). positions: 0 at serving (the ranker was trained with the logged slot as a feature).
    """
    n = len(cand.news_ids)
    if counters.news_ids != cand.news_ids:
        raise ValueError("item counters are not for these candidates")
    x = RankerInputs(
        two_tower_sim=cand.vectors @ np.asarray(user_vec, np.float32),
        subcategory_affinity=_share(history_subcategory, cand.subcategory),
        category_affinity=_share(history_category, cand.category),
        clicks=counters.clicks, shows_6h=counters.shows_6h, expected_clicks=counters.expected_clicks,
        age_h=(now_s - cand.publish_s) / 3600.0,
        history_len=np.full(n, len(user.history), dtype=np.float64),  # the bounded list, as in training
        position=np.zeros(n) if positions is None else np.asarray(positions, np.float64),
        user_topic_clicks={}, user_topic_expected={},
    )
    for level, labels in (("subcategory", cand.subcategory), ("category", cand.category)):
        for h in USER_TOPIC_HALF_LIVES_H:
            x.user_topic_clicks[level, h], x.user_topic_expected[level, h] = user.topic_counts(level, h, labels)
    return ranker_features(x, spec)
