"""The feature spec and the one feature-building code path for both training rows and serving inputs.

Training replays the log to get each counter at each impression time; serving reads the same counters from the
online store. Both then call `ranker_features`, so a model never sees features built two different ways.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

FEATURE_SPEC_VERSION = 1
RANKER_FEATURES = (
    "two_tower_sim", "subcategory_affinity", "category_affinity",
    "log_clicks_1h", "log_clicks_6h", "log_clicks_24h", "log_shows_6h", "ctr_6h",
    "log_age_h", "log_history_len", "position",
)
POPULARITY_HALF_LIVES_H = (1.0, 6.0, 24.0)


@dataclass(frozen=True)
class FeatureSpec:
    """What a model version expects: copied into its manifest; serving refuses a spec it cannot build."""

    categories: tuple[str, ...]            # index 0 is reserved for unknown
    subcategories: tuple[str, ...]
    token_buckets: int = 16_384
    max_tokens: int = 48
    history_len: int = 50
    embedding_dim: int = 64
    ranker_features: tuple[str, ...] = RANKER_FEATURES
    popularity_half_lives_h: tuple[float, ...] = POPULARITY_HALF_LIVES_H
    version: int = FEATURE_SPEC_VERSION
    text_encoder: str = "hashed_bag"
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> FeatureSpec:
        tuples = ("categories", "subcategories", "ranker_features", "popularity_half_lives_h")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})

    def check_buildable(self) -> None:
        """Raise ValueError if this code cannot build the features the spec names (a version skew)."""
        if self.version != FEATURE_SPEC_VERSION:
            raise ValueError(f"feature spec version {self.version} != supported {FEATURE_SPEC_VERSION}")
        unknown = set(self.ranker_features) - set(RANKER_FEATURES)
        if unknown:
            raise ValueError(f"feature spec names features this code cannot build: {sorted(unknown)}")
        if tuple(self.popularity_half_lives_h) != POPULARITY_HALF_LIVES_H:
            raise ValueError(f"popularity half-lives {self.popularity_half_lives_h} != {POPULARITY_HALF_LIVES_H}")


def decayed_counts(event_key: np.ndarray, event_t: np.ndarray, query_key: np.ndarray, query_t: np.ndarray,
                   half_life_s: float) -> np.ndarray:
    """Sum over events with the same key strictly before each query time of 2^(-(t_query - t_event)/half_life).

    Keys are non-negative ints; times are seconds (float). O((E + Q) log E). This is the offline twin of the
    online store's decayed counters (value, last-update time), which give the same number at read time.
    """
    tau = half_life_s / np.log(2.0)
    origin = min(event_t.min(initial=0.0), query_t.min(initial=0.0))
    e_t, q_t = event_t - origin, query_t - origin
    order = np.lexsort((e_t, event_key))
    e_key, e_t = event_key[order], e_t[order]
    span = float(max(e_t.max(initial=0.0), q_t.max(initial=0.0))) + 1.0
    # Events are summed in windows of 8 tau, each with its own exponent offset: exp() stays below e^8, so the
    # prefix-sum differences below keep ~1e-12 relative precision on logs of any length (wider windows lose it).
    shift = np.floor(e_t / (8 * tau)) * 8 * tau
    out = np.zeros(query_key.size)
    for s in np.unique(shift):
        sel = shift == s
        k, t = e_key[sel], e_t[sel]
        cum = np.r_[0.0, np.cumsum(np.exp((t - s) / tau))]
        before = np.searchsorted(k * span + t, query_key * span + q_t, side="left")
        first = np.searchsorted(k * span, query_key * span, side="left")
        out += (cum[before] - cum[first]) * np.exp(np.clip(-(q_t - s) / tau, -700, 700))
    return out


@dataclass
class RankerInputs:
    """Raw per-candidate signals, shape (n,) each, gathered by training (log replay) or serving (store)."""

    two_tower_sim: np.ndarray
    subcategory_affinity: np.ndarray   # share of the reader's history in the candidate's subcategory
    category_affinity: np.ndarray
    clicks: dict[float, np.ndarray]    # half-life (h) -> decayed click count
    shows_6h: np.ndarray               # decayed impressions count, half-life 6 h
    age_h: np.ndarray
    history_len: np.ndarray
    position: np.ndarray               # logged slot in training; 0 at serving (position debiasing)


def ranker_features(x: RankerInputs, spec: FeatureSpec) -> np.ndarray:
    """(n, len(spec.ranker_features)) float32 feature matrix, columns in spec order."""
    columns = {
        "two_tower_sim": lambda: x.two_tower_sim,
        "subcategory_affinity": lambda: x.subcategory_affinity,
        "category_affinity": lambda: x.category_affinity,
        "log_clicks_1h": lambda: np.log1p(x.clicks[1.0]),
        "log_clicks_6h": lambda: np.log1p(x.clicks[6.0]),
        "log_clicks_24h": lambda: np.log1p(x.clicks[24.0]),
        "log_shows_6h": lambda: np.log1p(x.shows_6h),
        "ctr_6h": lambda: (x.clicks[6.0] + 0.05) / (x.shows_6h + 1.0),
        "log_age_h": lambda: np.log1p(np.maximum(x.age_h, 0.0)),
        "log_history_len": lambda: np.log1p(x.history_len),
        "position": lambda: np.log1p(x.position),
    }
    n = x.two_tower_sim.shape[0]
    out = np.empty((n, len(spec.ranker_features)), dtype=np.float32)
    for j, name in enumerate(spec.ranker_features):
        col = np.asarray(columns[name](), dtype=np.float32)
        if col.shape != (n,):
            raise ValueError(f"feature {name}: shape {col.shape}, expected ({n},)")
        out[:, j] = col
    return out
