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
    "log_clicks_1h", "log_clicks_6h", "log_clicks_24h", "log_shows_6h", "ctr_6h", "coec_6h", "coec_24h",
    "log_age_h", "log_history_len", "position",
    *(f"log_user_{level}_{kind}_{h}h" for level in ("subcategory", "category") for kind in ("clicks", "expected")
      for h in (24, 168)),
)
# reader x topic counters: a short memory follows drift, a long one is stable for light readers
USER_TOPIC_HALF_LIVES_H = (24.0, 168.0)
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
    position_prior: tuple[float, ...] = ()  # click rate by slot in the training log; expected clicks use it
    # retrieval score = user . item + weight * log1p(decayed 6 h clicks): an item-bias dimension in the index, so
    # retrieval knows what readers are clicking right now (quality, breaking news) besides what they like
    retrieval_popularity_weight: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> FeatureSpec:
        tuples = ("categories", "subcategories", "ranker_features", "popularity_half_lives_h", "position_prior")
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
                   half_life_s: float, event_weight: np.ndarray | None = None) -> np.ndarray:
    """Sum over events with the same key strictly before each query time of w * 2^(-(t_query - t_event)/half_life)
    (w = event_weight, default 1).

    Keys are non-negative ints; times are seconds (float). O((E + Q) log E). This is the offline twin of the
    online store's decayed counters (value, last-update time), which give the same number at read time.
    """
    tau = half_life_s / np.log(2.0)
    origin = min(event_t.min(initial=0.0), query_t.min(initial=0.0))
    e_t, q_t = event_t - origin, query_t - origin
    order = np.lexsort((e_t, event_key))
    e_key, e_t = event_key[order], e_t[order]
    e_w = np.ones(e_t.size) if event_weight is None else np.asarray(event_weight, np.float64)[order]
    span = float(max(e_t.max(initial=0.0), q_t.max(initial=0.0))) + 1.0
    # Events are summed in windows of 8 tau, each with its own exponent offset: exp() stays below e^8, so the
    # prefix-sum differences below keep ~1e-12 relative precision on logs of any length (wider windows lose it).
    shift = np.floor(e_t / (8 * tau)) * 8 * tau
    out = np.zeros(query_key.size)
    for s in np.unique(shift):
        sel = shift == s
        k, t = e_key[sel], e_t[sel]
        cum = np.r_[0.0, np.cumsum(e_w[sel] * np.exp((t - s) / tau))]
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
    expected_clicks: dict[float, np.ndarray]  # half-life (h) -> decayed sum of position_prior[slot] over shows
    age_h: np.ndarray
    history_len: np.ndarray
    position: np.ndarray               # logged slot in training; 0 at serving (position debiasing)
    # the reader's decayed clicks / expected clicks (shows weighted by position_prior) in the candidate's topic:
    # interest measured against exposure, not against what the logging policy happened to show
    user_topic_clicks: dict[tuple[str, float], np.ndarray]    # ("subcategory" | "category", half-life h) -> (n,)
    user_topic_expected: dict[tuple[str, float], np.ndarray]


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
        # clicks over expected clicks: a click rate with the slot's position bias taken out (article quality)
        "coec_6h": lambda: (x.clicks[6.0] + 1.0) / (x.expected_clicks[6.0] + 1.0),
        "coec_24h": lambda: (x.clicks[24.0] + 1.0) / (x.expected_clicks[24.0] + 1.0),
        "log_age_h": lambda: np.log1p(np.maximum(x.age_h, 0.0)),
        "log_history_len": lambda: np.log1p(x.history_len),
        "position": lambda: np.log1p(x.position),
    }
    for level in ("subcategory", "category"):
        for h in USER_TOPIC_HALF_LIVES_H:
            columns[f"log_user_{level}_clicks_{h:.0f}h"] = lambda k=(level, h): np.log1p(x.user_topic_clicks[k])
            columns[f"log_user_{level}_expected_{h:.0f}h"] = lambda k=(level, h): np.log1p(x.user_topic_expected[k])
    n = x.two_tower_sim.shape[0]
    out = np.empty((n, len(spec.ranker_features)), dtype=np.float32)
    for j, name in enumerate(spec.ranker_features):
        col = np.asarray(columns[name](), dtype=np.float32)
        if col.shape != (n,):
            raise ValueError(f"feature {name}: shape {col.shape}, expected ({n},)")
        out[:, j] = col
    return out
