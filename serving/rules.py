"""Business rules after scoring: a freshness boost, deduplication and a per-category diversity cap."""
from __future__ import annotations

import numpy as np


def apply_rules(news_ids, scores: np.ndarray, categories: np.ndarray, age_h: np.ndarray, k: int,
                category_cap: int, freshness_boost: float, freshness_tau_h: float, ids_unique: bool = False
                ) -> tuple[list[str], list[float]]:
    """Top-k ids by score + freshness_boost * exp(-age/tau), at most `category_cap` per category, no repeats.

    If the cap leaves fewer than k, the best capped-out items fill the rest (a short list is worse than a
    less diverse one). Vectorized: a reader's best-scored items often crowd a few categories, and walking the
    ranking in Python until k fit the cap took ~170 steps per request. ids_unique: the caller guarantees no
    repeats (rows of one index snapshot), which skips the check.
    """
    adjusted = np.asarray(scores, np.float64) + freshness_boost * np.exp(-np.maximum(age_h, 0.0) / freshness_tau_h)
    n, prefix = adjusted.size, max(8 * k * category_cap, 64)
    if n > 2 * prefix:  # the best `prefix` (ties included) usually decide: try them first
        threshold = np.partition(adjusted, n - prefix)[n - prefix]
        best = np.flatnonzero(adjusted >= threshold)  # ascending rows: a stable sort keeps the full sort's order
        order = best[np.argsort(-adjusted[best], kind="stable")]
        chosen, filled = _pick(news_ids, order, categories, k, category_cap, ids_unique)
        if filled:  # k fit the cap inside the prefix: the rows after it cannot change the answer
            return [news_ids[i] for i in chosen.tolist()], adjusted[chosen].tolist()
    chosen, _ = _pick(news_ids, np.argsort(-adjusted, kind="stable"), categories, k, category_cap, ids_unique)
    return [news_ids[i] for i in chosen.tolist()], adjusted[chosen].tolist()


def _pick(news_ids, order: np.ndarray, categories: np.ndarray, k: int, category_cap: int, ids_unique: bool
          ) -> tuple[np.ndarray, bool]:
    """Rows chosen from `order` (best first): the first k within the cap, topped up with capped-out ones; and
    whether k fit within the cap."""
    if not ids_unique and len(set(news_ids)) != len(news_ids):  # repeats: keep each id's best-ranked entry only
        _, first = np.unique(np.asarray(news_ids, dtype=object)[order], return_index=True)
        order = order[np.sort(first)]
    cat = np.asarray(categories)[order]
    if cat.dtype.kind not in "iu":  # names: as codes (the request path passes codes already)
        cat = np.unique(cat, return_inverse=True)[1]
    # rank of each item within its category, in score order: stable sort by category keeps score order inside
    by_cat = np.argsort(cat, kind="stable")
    sorted_cat = cat[by_cat]
    group_start = np.flatnonzero(np.r_[True, sorted_cat[1:] != sorted_cat[:-1]])
    rank = np.empty(cat.size, np.int64)
    rank[by_cat] = np.arange(cat.size) - np.repeat(group_start, np.diff(np.r_[group_start, cat.size]))
    fits = rank < category_cap
    chosen = order[fits][:k]
    filled = chosen.size == k
    if not filled:
        chosen = np.concatenate([chosen, order[~fits][:k - chosen.size]])
    return chosen, filled

def fills_with_cap(categories: np.ndarray, k: int, category_cap: int) -> bool:
    """Whether these items alone give k picks within the category cap (then items after them cannot change the
    answer of apply_rules over a longer list in the same order)."""
    _, counts = np.unique(categories, return_counts=True)
    return int(np.minimum(counts, category_cap).sum()) >= k
