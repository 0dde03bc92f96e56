"""Ranker inputs at request time, from the online store's reads: the serving twin of recsys.ranking_data.

Both end in recsys.features.ranker_features, so the model sees the same features it was trained on; a test
replays a logged impression through both paths and compares them. Topics are compared as integer codes
(np.bincount and a dense gather) rather than per-candidate dict lookups: same numbers, ~50x less Python.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from feature_store.base import ItemCounters, UserFeatures
from recsys.features import USER_TOPIC_HALF_LIVES_H, FeatureSpec, RankerInputs, ranker_features

LEVELS = ("subcategory", "category")


@dataclass(frozen=True)
class Candidates:
    """What the request path knows about its candidates from the in-process item table; shape (n,) each.

    subcategory / category: topic names (str), or integer topic codes when ranker features are given a vocabulary
    (then -1 is an unknown topic)."""

    news_ids: tuple[str, ...]
    vectors: np.ndarray        # (n, D) item-tower vectors
    subcategory: np.ndarray
    category: np.ndarray
    publish_s: np.ndarray      # Unix seconds


def encode_topics(history: np.ndarray, candidates: np.ndarray) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """(vocabulary, history codes, candidate codes) for topic names; "" (an article the table no longer knows)
    codes to -1, which never matches."""
    names = np.unique(np.concatenate([np.asarray(history, str), np.asarray(candidates, str)]))
    vocab = {n: i for i, n in enumerate(names.tolist()) if n != ""}

    def codes(labels) -> np.ndarray:
        return np.fromiter((vocab.get(str(x), -1) for x in labels), dtype=np.int64, count=len(labels))

    return vocab, codes(history), codes(candidates)


def _share(history_codes: np.ndarray, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Share of the history whose topic equals each candidate's (unknown history items count, never match)."""
    counts = np.bincount(history_codes[history_codes >= 0], minlength=n_codes + 1)  # [-1] = [n_codes] = 0
    return counts[codes] / max(history_codes.size, 1)


def _dense(values: Mapping[str, float], vocab: Mapping[str, int]) -> np.ndarray:
    """A reader's per-topic values as an array over topic codes, plus a trailing 0 that code -1 reads."""
    out = np.zeros(len(vocab) + 1)
    for topic, v in values.items():
        code = vocab.get(topic)
        if code is not None:
            out[code] = v
    return out


def online_ranker_features(spec: FeatureSpec, user: UserFeatures, user_vec: np.ndarray, cand: Candidates,
                           counters: ItemCounters, history_subcategory: np.ndarray,
                           history_category: np.ndarray, now_s: float, positions: np.ndarray | None = None,
                           vocab: Mapping[str, Mapping[str, int]] | None = None) -> np.ndarray:
    """(n, F) features for one reader's candidates at `now_s`.

    history_*: topics of the reader's stored history (user.history order; "" or -1 for an article the item table no
    longer knows). vocab: level -> topic name -> code when topics are given as codes (the item table's), else
    topics are names. positions: 0 at serving (the ranker was trained with the logged slot as a feature).
    """
    n = len(cand.news_ids)
    if counters.news_ids != cand.news_ids:
        raise ValueError("item counters are not for these candidates")
    coded = {}
    for level, hist, labels in (("subcategory", history_subcategory, cand.subcategory),
                                ("category", history_category, cand.category)):
        if vocab is None:
            coded[level] = encode_topics(hist, labels)
        else:
            coded[level] = (vocab[level], np.asarray(hist, np.int64), np.asarray(labels, np.int64))
    x = RankerInputs(
        two_tower_sim=cand.vectors @ np.asarray(user_vec, np.float32),
        subcategory_affinity=_share(coded["subcategory"][1], coded["subcategory"][2], len(coded["subcategory"][0])),
        category_affinity=_share(coded["category"][1], coded["category"][2], len(coded["category"][0])),
        clicks=counters.clicks, shows_6h=counters.shows_6h, expected_clicks=counters.expected_clicks,
        age_h=(now_s - cand.publish_s) / 3600.0,
        history_len=np.full(n, len(user.history), dtype=np.float64),  # the bounded list, as in training
        position=np.zeros(n) if positions is None else np.asarray(positions, np.float64),
        user_topic_clicks={}, user_topic_expected={},
    )
    for level in LEVELS:
        names, _, codes = coded[level]
        for h in USER_TOPIC_HALF_LIVES_H:
            x.user_topic_clicks[level, h] = _dense(user.topic_clicks[level, h], names)[codes]
            x.user_topic_expected[level, h] = _dense(user.topic_expected[level, h], names)[codes]
    return ranker_features(x, spec)
