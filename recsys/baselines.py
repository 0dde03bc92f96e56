"""Non-learned scorers every model is compared with: popularity, recency, random, content+history, the oracle.

Each takes the shown-items table (one row per shown article: impression_id, user_id, time, position, news_id,
clicked, plus `history` per row) and returns one score per row, higher = more likely to be clicked.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from recsys.features import decayed_counts

POPULARITY_HALF_LIFE_H = 6.0


def seconds(times: pd.Series, origin: pd.Timestamp) -> np.ndarray:
    return ((times - origin) / pd.Timedelta(seconds=1)).to_numpy(np.float64)


def popularity_scores(shown: pd.DataFrame, log: pd.DataFrame, half_life_h: float = POPULARITY_HALF_LIFE_H
                      ) -> np.ndarray:
    """Clicks on each shown article strictly before its display time in `log`, decayed with `half_life_h`."""
    origin = min(shown["time"].min(), log["time"].min())
    clicks = log[log["clicked"] == 1]
    ids = pd.Index(pd.unique(pd.concat([clicks["news_id"], shown["news_id"]])))
    return decayed_counts(ids.get_indexer(clicks["news_id"]), seconds(clicks["time"], origin),
                          ids.get_indexer(shown["news_id"]), seconds(shown["time"], origin), half_life_h * 3600.0)


def recency_scores(shown: pd.DataFrame, publish_time: pd.Series) -> np.ndarray:
    """Minus the article's age at display time; `publish_time` is indexed by news_id."""
    published = shown["news_id"].map(publish_time)
    return -((shown["time"] - published) / pd.Timedelta(hours=1)).to_numpy(np.float64)


def random_scores(shown: pd.DataFrame, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(len(shown))


def content_history_scores(shown: pd.DataFrame, news: pd.DataFrame) -> np.ndarray:
    """Share of the reader's history in the article's subcategory, plus a little for its category.

    The simplest content model: it knows only what the reader clicked before and the article's labels.
    """
    sub = news.set_index("news_id")["subcategory"]
    cat = news.set_index("news_id")["category"]
    row_sub = shown["news_id"].map(sub).to_numpy()
    row_cat = shown["news_id"].map(cat).to_numpy()
    scores = np.zeros(len(shown))
    hist = shown["history"].to_numpy()
    # one Counter per distinct history string: rows of one impression share it
    starts = np.r_[0, np.nonzero(hist[1:] != hist[:-1])[0] + 1, len(hist)]
    for a, b in zip(starts[:-1], starts[1:]):
        h = hist[a].split() if isinstance(hist[a], str) else []
        n = len(h) + 1.0
        subs = Counter(sub.reindex(h).dropna().to_numpy())
        cats = Counter(cat.reindex(h).dropna().to_numpy())
        scores[a:b] = [(subs.get(s, 0) + 0.3 * cats.get(c, 0)) / n for s, c in zip(row_sub[a:b], row_cat[a:b])]
    return scores
