"""Business rules: the vectorized apply_rules against a plain loop that states the rule (an independent
implementation), on random lists with ties, repeats and crowded categories."""
from __future__ import annotations

import numpy as np

from serving.rules import apply_rules, fills_with_cap


def reference(news_ids, scores, categories, age_h, k, cap, boost, tau):
    adjusted = np.asarray(scores, np.float64) + boost * np.exp(-np.maximum(age_h, 0.0) / tau)
    chosen, spill, seen, per_cat = [], [], set(), {}
    for i in np.argsort(-adjusted, kind="stable"):
        if news_ids[i] in seen:
            continue
        seen.add(news_ids[i])
        if per_cat.get(categories[i], 0) < cap:
            per_cat[categories[i]] = per_cat.get(categories[i], 0) + 1
            chosen.append(i)
        else:
            spill.append(i)
        if len(chosen) == k:
            break
    chosen += spill[:k - len(chosen)]
    return [news_ids[i] for i in chosen], [float(adjusted[i]) for i in chosen]


def test_apply_rules_equals_the_plain_loop():
    rng = np.random.default_rng(0)
    for trial in range(600):  # long lists too: the best-prefix shortcut and its fall-back to the whole list
        n = int(rng.integers(0, 80)) if trial % 2 else int(rng.integers(150, 700))
        k, cap = int(rng.integers(1, 12)), int(rng.integers(1, 4))
        ids = [f"N{int(x)}" for x in rng.integers(0, 30 if trial % 3 == 0 else 10**6, n)]
        scores = np.round(rng.normal(size=n), 1)  # ties
        cats = rng.integers(0, int(rng.integers(1, 6)), n)
        if trial % 4 == 1:
            cats = np.array([f"c{c}" for c in cats], dtype=object)
        age = rng.uniform(0, 30, n)
        want = reference(ids, scores, cats, age, k, cap, 0.3, 6.0)
        got = apply_rules(ids, scores, cats, age, k, cap, 0.3, 6.0, ids_unique=len(set(ids)) == n)
        assert got[0] == want[0], trial
        np.testing.assert_allclose(got[1], want[1])


def test_fills_with_cap():
    assert fills_with_cap(np.array([1, 1, 1, 1, 2, 2]), 5, 3) and not fills_with_cap(np.array([1, 1, 1, 1, 2]), 5, 3)
