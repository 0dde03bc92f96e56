"""Business rules after scoring: a freshness boost, deduplication and a per-category diversity cap."""
from __future__ import annotations

import numpy as np


def apply_rules(news_ids, scores: np.ndarray, categories: np.ndarray, age_h: np.ndarray, k: int,
                category_cap: int, freshness_boost: float, freshness_tau_h: float) -> tuple[list[str], list[float]]:
    """Top-k ids by score + freshness_boost * exp(-age/tau), at most `category_cap` per category, no repeats.

    If the cap leaves fewer than k, the best capped-out items fill the rest (a short list is worse than a
    less diverse one).
    """
    adjusted = np.asarray(scores, np.float64) + freshness_boost * np.exp(-np.maximum(age_h, 0.0) / freshness_tau_h)
    order = np.argsort(-adjusted, kind="stable").tolist()  # plain ints: the loop below is Python either way
    cats = np.asarray(categories).tolist()
    chosen, spill, seen, per_cat = [], [], set(), {}
    for i in order:
        n = news_ids[i]
        if n in seen:
            continue
        seen.add(n)
        c = cats[i]
        if per_cat.get(c, 0) < category_cap:
            per_cat[c] = per_cat.get(c, 0) + 1
            chosen.append(i)
        else:
            spill.append(i)
        if len(chosen) == k:
            break
    chosen += spill[:k - len(chosen)]
    return [news_ids[i] for i in chosen], adjusted[chosen].tolist()


def fills_with_cap(categories: np.ndarray, k: int, category_cap: int) -> bool:
    """Whether these items alone give k picks within the category cap (then items after them cannot change the
    answer of apply_rules over a longer list in the same order)."""
    _, counts = np.unique(categories, return_counts=True)
    return int(np.minimum(counts, category_cap).sum()) >= k
