"""A reference beside the oracle for ranking evaluation on a synthetic world: the true click model, told everything
(article quality, freshness, breaking boost, slot) except the reader's interests, which it estimates from the
reader's click history as the world draws interests (data.synth_world's taste: a Dirichlet over categories times
a Dirichlet over each category's subcategories), each click weighted RECENCY**rank (newest first) since interests
drift. The gap from it to the oracle is what the history does not reveal about a reader's interests now, however
well a model learns.

RECENCY = 0.95 was chosen on the small world's train split (its last day: 0.97 and 0.95 best, within 0.0001 AUC),
never on the dev split it is reported on.
"""
from __future__ import annotations

import numpy as np

from data.synth_world import CATEGORY_ALPHA, SUBCATEGORY_SHAPE, TASTE_FLOOR
from data.truth import GroundTruth

RECENCY = 0.95


def estimate_interests(history_sub: np.ndarray, cat_of_sub: np.ndarray, recency: float = RECENCY) -> np.ndarray:
    """(I, S) posterior-mean interests from histories of subcategory codes (I, H), newest first, -1 = padding."""
    n_subs, n_cats = cat_of_sub.size, int(cat_of_sub.max()) + 1
    weight = np.where(history_sub >= 0, recency ** np.arange(history_sub.shape[1]), 0.0)
    subs = np.zeros((history_sub.shape[0], n_subs))
    rows = np.repeat(np.arange(history_sub.shape[0]), history_sub.shape[1])
    np.add.at(subs, (rows, np.maximum(history_sub, 0).ravel()), weight.ravel())
    cats = np.zeros((history_sub.shape[0], n_cats))
    np.add.at(cats.T, cat_of_sub, subs.T)
    size = np.bincount(cat_of_sub, minlength=n_cats)  # subcategories per category
    p_cat = (cats + CATEGORY_ALPHA) / (subs.sum(1, keepdims=True) + CATEGORY_ALPHA * n_cats)
    p_sub = (subs + SUBCATEGORY_SHAPE) / (cats[:, cat_of_sub] + SUBCATEGORY_SHAPE * size[cat_of_sub])
    theta = (1.0 - TASTE_FLOOR) * p_cat[:, cat_of_sub] * p_sub + TASTE_FLOOR / n_subs
    return theta / theta.sum(1, keepdims=True)


def history_oracle_scores(truth: GroundTruth, news_ids: np.ndarray, history: np.ndarray, row_imp: np.ndarray,
                          row_item: np.ndarray, row_t_s: np.ndarray, row_pos: np.ndarray,
                          recency: float = RECENCY) -> np.ndarray:
    """(R,) click probabilities of shown rows: `history` (I, H) article rows per impression (newest first, -1 =
    padding), rows in `news_ids` order; row_t_s in the truth's seconds."""
    to_truth = truth.rows(news_ids)
    idx = to_truth[row_item]
    interest = history_interests(truth, to_truth, history, recency)[row_imp, truth.sub_idx[idx]]
    return truth.click_prob_given(interest, idx, row_t_s, row_pos)


def history_interests(truth: GroundTruth, to_truth: np.ndarray, history: np.ndarray,
                      recency: float = RECENCY) -> np.ndarray:
    """(I, S) interests estimated from `history` (I, H) article rows (newest first, -1 = padding); `to_truth` maps
    those rows to the truth's (GroundTruth.rows of the dataset's news ids)."""
    hist_sub = np.where(history >= 0, truth.sub_idx[to_truth[np.maximum(history, 0)]], -1)
    return estimate_interests(hist_sub, truth.category_of_subcategory, recency)
