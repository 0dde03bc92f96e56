"""Item popularity counters of the whole live pool, held in process and refreshed from the store in the background.

Every request ranks ~500 candidates and needs their counters; reading them from Redis per request cost ~5 ms of
CPU (packing and parsing a 500-key command). The app's refresh loop reads the pool's counters every few seconds
(POPULARITY_REFRESH_S) at a reference time t_ref; a request decays them on to its own time, which is exact for
every event applied before the refresh (decay is multiplicative). Freshness: events of the last refresh period
are not seen yet, and an article added since the last refresh reads 0, as a new article in the store does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feature_store.base import EXPECTED_HALF_LIVES_H, SHOWS_HALF_LIFE_H, ItemCounters


@dataclass(frozen=True)
class PoolCounters:
    """Counters decayed to t_ref_s, row i for row i of the index snapshot holding them; arrays (n,) float64."""

    t_ref_s: float
    clicks: dict[float, np.ndarray]
    shows_6h: np.ndarray
    expected_clicks: dict[float, np.ndarray]

    @classmethod
    def read_at(cls, counters: ItemCounters, t_ref_s: float) -> PoolCounters:
        return cls(t_ref_s, dict(counters.clicks), counters.shows_6h, dict(counters.expected_clicks))

    def _map(self, fn) -> PoolCounters:
        return PoolCounters(self.t_ref_s, {h: fn(v) for h, v in self.clicks.items()}, fn(self.shows_6h),
                            {h: fn(v) for h, v in self.expected_clicks.items()})

    def take(self, rows: np.ndarray) -> PoolCounters:
        """The counters of `rows` (an int array or a boolean mask), in that order."""
        return self._map(lambda v: v[rows])

    def extended(self, n: int) -> PoolCounters:
        """n more rows reading 0 (articles added since the refresh: the store has nothing newer for them)."""
        return self._map(lambda v: np.concatenate([v, np.zeros(n)]))

    def at(self, rows: np.ndarray, news_ids: tuple[str, ...], now_s: float) -> ItemCounters:
        """The counters of `rows` decayed on to now_s, as the store would read them (a read before t_ref is taken
        at t_ref, as the store takes a read before an update's time)."""
        age_h = max(now_s - self.t_ref_s, 0.0) / 3600.0  # scalars in plain floats: numpy scalar maths is slower

        def decayed(v: np.ndarray, half_life_h: float) -> np.ndarray:
            return v[rows] * 2.0 ** (-age_h / half_life_h)

        return ItemCounters(news_ids=news_ids, clicks={h: decayed(v, h) for h, v in self.clicks.items()},
                            shows_6h=decayed(self.shows_6h, SHOWS_HALF_LIFE_H),
                            expected_clicks={h: decayed(self.expected_clicks[h], h) for h in EXPECTED_HALF_LIVES_H})

def concat_counters(parts: list[ItemCounters]) -> ItemCounters:
    """One ItemCounters from chunked reads, in order."""
    cat = np.concatenate
    return ItemCounters(news_ids=tuple(n for p in parts for n in p.news_ids),
                        clicks={h: cat([p.clicks[h] for p in parts]) for h in parts[0].clicks},
                        shows_6h=cat([p.shows_6h for p in parts]),
                        expected_clicks={h: cat([p.expected_clicks[h] for p in parts])
                                         for h in parts[0].expected_clicks})
