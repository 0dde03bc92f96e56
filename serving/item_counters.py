"""Item popularity counters of the whole live pool, held in process and refreshed from the store in the background.

Every request ranks ~500 candidates and needs their counters; reading them from Redis per request cost ~5 ms of
CPU (packing and parsing a 500-key command). The app's refresh loop reads the pool's counters every few seconds
(POPULARITY_REFRESH_S), each chunk at its own read time t_ref; a request decays them on to its own time, which is
exact for every event applied before the read (decay is multiplicative). Freshness: events of the last refresh
period are not seen yet, and an article added since the last refresh reads 0, as a new article in the store does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feature_store.base import EXPECTED_HALF_LIVES_H, SHOWS_HALF_LIFE_H, ItemCounters
from recsys.features import POPULARITY_HALF_LIVES_H


# the columns of PoolCounters.values: ItemCounters' arrays, with the half-life each decays by
COLUMNS = (*(("clicks", h) for h in POPULARITY_HALF_LIVES_H), ("shows_6h", SHOWS_HALF_LIFE_H),
           *(("expected_clicks", h) for h in EXPECTED_HALF_LIVES_H))
_HALF_LIVES_H = np.array([h for _, h in COLUMNS])
CLICKS_6H = COLUMNS.index(("clicks", 6.0))


@dataclass(frozen=True)
class PoolCounters:
    """Row i: the counters of row i of the index snapshot holding them, decayed to t_ref_s[i] (when that row was
    read: a refresh reads its chunks spread over the period). One (n, len(COLUMNS)) float64 matrix, so a request
    gathers its candidates' rows once."""

    t_ref_s: np.ndarray   # (n,)
    values: np.ndarray    # (n, len(COLUMNS))

    @classmethod
    def read_at(cls, counters: ItemCounters, t_ref_s: float | np.ndarray) -> PoolCounters:
        def column(kind: str, h: float) -> np.ndarray:
            return counters.shows_6h if kind == "shows_6h" else getattr(counters, kind)[h]

        values = np.column_stack([column(kind, h) for kind, h in COLUMNS]).astype(np.float64)
        return cls(np.broadcast_to(np.asarray(t_ref_s, np.float64), (len(values),)).copy(), values)

    @classmethod
    def zeros(cls, n: int) -> PoolCounters:
        return cls(np.zeros(n), np.zeros((n, len(COLUMNS))))

    def take(self, rows: np.ndarray) -> PoolCounters:
        """The counters of `rows` (an int array or a boolean mask), in that order."""
        return PoolCounters(self.t_ref_s[rows], self.values[rows])

    def extended(self, n: int) -> PoolCounters:
        """n more rows reading 0 (articles added since the refresh: the store has nothing newer for them)."""
        return PoolCounters(np.concatenate([self.t_ref_s, np.zeros(n)]),
                            np.vstack([self.values, np.zeros((n, len(COLUMNS)))]))

    def at(self, rows: np.ndarray, news_ids: tuple[str, ...], now_s: float) -> ItemCounters:
        """The counters of `rows` decayed on to now_s, as the store would read them (a read before t_ref is taken
        at t_ref, as the store takes a read before an update's time)."""
        age_h = np.maximum(now_s - self.t_ref_s[rows], 0.0) / 3600.0
        g = self.values[rows] * np.exp2(-age_h[:, None] / _HALF_LIVES_H)
        cols = dict(zip(COLUMNS, g.T))
        return ItemCounters(news_ids=news_ids, clicks={h: cols["clicks", h] for h in POPULARITY_HALF_LIVES_H},
                            shows_6h=cols["shows_6h", SHOWS_HALF_LIFE_H],
                            expected_clicks={h: cols["expected_clicks", h] for h in EXPECTED_HALF_LIVES_H})


def concat_counters(parts: list[ItemCounters]) -> ItemCounters:
    """One ItemCounters from chunked reads, in order."""
    cat = np.concatenate
    return ItemCounters(news_ids=tuple(n for p in parts for n in p.news_ids),
                        clicks={h: cat([p.clicks[h] for p in parts]) for h in parts[0].clicks},
                        shows_6h=cat([p.shows_6h for p in parts]),
                        expected_clicks={h: cat([p.expected_clicks[h] for p in parts])
                                         for h in parts[0].expected_clicks})
