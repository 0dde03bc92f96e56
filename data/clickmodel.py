"""The news world's true click model: one function shared by the generator and the ground-truth reader.

p(click) = examination(position) * sigmoid(relevance), where relevance adds the user's interest in the
article's subcategory, the article's hidden quality, its freshness and any breaking-news boost.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ClickModelParams:
    """Coefficients of the true click model. Stored in the world's truth so any served list can be scored."""

    bias: float = -1.2
    interest_weight: float = 1.1        # per unit of log(interest * n_subcategories)
    interest_log_min: float = -3.0      # clip of the interest term: a topic you ignore is not -inf
    interest_log_max: float = 2.5
    freshness_per_hour: float = -0.05   # relevance lost per hour of article age
    position_exponent: float = 0.6      # examination(pos) = (1 + pos) ** -exponent, pos 0-based
    breaking_boost: float = 2.0         # relevance added at a breaking event's start, decaying
    breaking_decay_h: float = 3.0       # e-folding time of the breaking boost, hours

    def to_json(self) -> dict:
        return asdict(self)


def examination(positions: np.ndarray, params: ClickModelParams) -> np.ndarray:
    """Probability that a reader looks at slot `positions` (0-based), shape preserved."""
    return (1.0 + np.asarray(positions, dtype=np.float64)) ** -params.position_exponent


def breaking_boost(hours_since_event: np.ndarray, params: ClickModelParams) -> np.ndarray:
    """Relevance boost of a breaking story `hours_since_event` after it broke (0 before it, or if NaN)."""
    h = np.asarray(hours_since_event, dtype=np.float64)
    out = np.zeros_like(h)
    ok = np.isfinite(h) & (h >= 0)
    out[ok] = params.breaking_boost * np.exp(-h[ok] / params.breaking_decay_h)
    return out


def relevance(
    interest: np.ndarray, quality: np.ndarray, age_h: np.ndarray, boost: np.ndarray,
    n_subcategories: int, params: ClickModelParams,
) -> np.ndarray:
    """Relevance logit of articles for a reader; all inputs shape (n,).

    interest: the reader's true interest weight on each article's subcategory (a probability, sums to 1
    over all subcategories). age_h: article age in hours at display time (>= 0).
    """
    interest_term = np.clip(np.log(np.maximum(interest, 1e-12) * n_subcategories),
                            params.interest_log_min, params.interest_log_max)
    return (params.bias + params.interest_weight * interest_term + quality
            + params.freshness_per_hour * np.maximum(age_h, 0.0) + boost)


def click_probability(
    interest: np.ndarray, quality: np.ndarray, age_h: np.ndarray, boost: np.ndarray,
    positions: np.ndarray, n_subcategories: int, params: ClickModelParams,
) -> np.ndarray:
    """True probability that the reader clicks each shown article, shape (n,), in [0, 1)."""
    r = relevance(interest, quality, age_h, boost, n_subcategories, params)
    return examination(positions, params) / (1.0 + np.exp(-r))
