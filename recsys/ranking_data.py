"""Ranker rows from a logged split: replays the log to get each signal as it was at display time, then builds
the matrix with recsys.features.ranker_features, the same function serving calls on online-store values."""
from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.dataset import Dataset, Split
from recsys.features import USER_TOPIC_HALF_LIVES_H, FeatureSpec, RankerInputs, decayed_counts, ranker_features

CHUNK_ROWS = 200_000


def history_affinity(history: np.ndarray, labels_of_item: np.ndarray, row_imp: np.ndarray, row_item: np.ndarray
                     ) -> np.ndarray:
    """(R,) share of each row's reader history (padded rows, -1 = pad) whose label equals the candidate's."""
    hist_label = np.where(history >= 0, labels_of_item[np.maximum(history, 0)], -1)
    n_valid = np.maximum((history >= 0).sum(1), 1)
    out = np.empty(row_imp.size)
    for s in range(0, row_imp.size, CHUNK_ROWS):
        imp, item = row_imp[s:s + CHUNK_ROWS], row_item[s:s + CHUNK_ROWS]
        out[s:s + CHUNK_ROWS] = (hist_label[imp] == labels_of_item[item][:, None]).sum(1) / n_valid[imp]
    return out


def rowwise_dot(a: np.ndarray, a_rows: np.ndarray, b: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    """(R,) dot products a[a_rows[r]] . b[b_rows[r]], chunked to bound memory."""
    out = np.empty(a_rows.size, dtype=np.float32)
    for s in range(0, a_rows.size, CHUNK_ROWS):
        out[s:s + CHUNK_ROWS] = np.einsum("ij,ij->i", a[a_rows[s:s + CHUNK_ROWS]], b[b_rows[s:s + CHUNK_ROWS]])
    return out


class LogCounters:
    """Decayed click and impression counters replayed from every logged split (the online store's twins)."""

    def __init__(self, ds: Dataset):
        splits = (ds.train, ds.dev)
        item = np.concatenate([s.row_item for s in splits])
        t = np.concatenate([s.row_t for s in splits])
        clicked = np.concatenate([s.row_label for s in splits]) == 1
        self.click_item, self.click_t = item[clicked], t[clicked]
        self.show_item, self.show_t = item, t
        self.show_pos = np.concatenate([s.row_pos for s in splits])
        self.show_user, users = pd.factorize(np.concatenate([s.imp_user[s.row_imp] for s in splits]))
        self.users = pd.Index(users)
        self.clicked = clicked
        self.topic_code = {"subcategory": pd.factorize(ds.articles.subcategory_name)[0],
                           "category": pd.factorize(ds.articles.category_name)[0]}

    def clicks(self, item: np.ndarray, t: np.ndarray, half_life_h: float) -> np.ndarray:
        return decayed_counts(self.click_item, self.click_t, item, t, half_life_h * 3600.0)

    def shows(self, item: np.ndarray, t: np.ndarray, half_life_h: float) -> np.ndarray:
        return decayed_counts(self.show_item, self.show_t, item, t, half_life_h * 3600.0)

    def expected_clicks(self, item: np.ndarray, t: np.ndarray, half_life_h: float, position_prior: np.ndarray
                        ) -> np.ndarray:
        """Decayed sum over earlier shows of the click rate their slot gets on average."""
        prior = position_prior[np.minimum(self.show_pos, position_prior.size - 1)]
        return decayed_counts(self.show_item, self.show_t, item, t, half_life_h * 3600.0, event_weight=prior)

    def user_topic(self, users: np.ndarray, item: np.ndarray, t: np.ndarray, level: str, half_life_h: float,
                   position_prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decayed (clicks, expected clicks) of each reader in each candidate's topic before `t`."""
        code = self.topic_code[level]
        n_topics = int(code.max()) + 1
        event_key = self.show_user * n_topics + code[self.show_item]
        query_user = self.users.get_indexer(users)  # -1 for a reader never logged: no key matches
        query_key = np.where(query_user >= 0, query_user * n_topics + code[item], -1)
        hl = half_life_h * 3600.0
        prior = position_prior[np.minimum(self.show_pos, position_prior.size - 1)]
        clicks = decayed_counts(event_key[self.clicked], self.show_t[self.clicked], query_key, t, hl)
        expected = decayed_counts(event_key, self.show_t, query_key, t, hl, event_weight=prior)
        return clicks, expected


def position_prior(split: Split, max_slots: int = 50) -> tuple[float, ...]:
    """Click rate by slot (0-based) over a labelled split; slots past `max_slots` share the last value."""
    pos = np.minimum(split.row_pos, max_slots - 1)
    labelled = split.row_label >= 0
    clicks = np.bincount(pos[labelled], split.row_label[labelled], minlength=max_slots)
    shows = np.bincount(pos[labelled], minlength=max_slots)
    last = int(np.nonzero(shows)[0].max()) if shows.any() else 0
    rate = np.where(shows > 0, clicks / np.maximum(shows, 1), 0.0)
    rate[last + 1:] = rate[last]
    return tuple(round(float(r), 6) for r in rate)


def ranker_rows(ds: Dataset, split: Split, spec: FeatureSpec, item_vecs: np.ndarray, user_vecs: np.ndarray,
                counters: LogCounters) -> np.ndarray:
    """(R, F) features for every shown row of `split`; user_vecs is one vector per impression of the split."""
    a = ds.articles
    t = split.row_t
    sub_code = np.unique(a.subcategory_name, return_inverse=True)[1]
    cat_code = np.unique(a.category_name, return_inverse=True)[1]
    x = RankerInputs(
        two_tower_sim=rowwise_dot(user_vecs, split.row_imp, item_vecs, split.row_item),
        subcategory_affinity=history_affinity(split.history, sub_code, split.row_imp, split.row_item),
        category_affinity=history_affinity(split.history, cat_code, split.row_imp, split.row_item),
        clicks={h: counters.clicks(split.row_item, t, h) for h in spec.popularity_half_lives_h},
        shows_6h=counters.shows(split.row_item, t, 6.0),
        expected_clicks={h: counters.expected_clicks(split.row_item, t, h, np.asarray(spec.position_prior))
                         for h in (6.0, 24.0)},
        age_h=(t - a.publish_s[split.row_item]) / 3600.0,
        history_len=(split.history >= 0).sum(1)[split.row_imp],
        position=split.row_pos.astype(np.float64),
        user_topic_clicks={}, user_topic_expected={},
    )
    for level in ("subcategory", "category"):
        for h in USER_TOPIC_HALF_LIVES_H:
            x.user_topic_clicks[level, h], x.user_topic_expected[level, h] = counters.user_topic(
                split.imp_user[split.row_imp], split.row_item, t, level, h, np.asarray(spec.position_prior))
    return ranker_features(x, spec)
