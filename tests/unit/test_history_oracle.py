"""The history oracle's interest estimate (Dirichlet posterior means of the world's own taste process, recent clicks
weighted more), checked by hand, and its scores: the true click model with only the interests replaced."""
from __future__ import annotations

import numpy as np
import pytest

from data.history_oracle import estimate_interests, history_oracle_scores
from data.synth import preset, write_world
from data.synth_world import CATEGORY_ALPHA, SUBCATEGORY_SHAPE, TASTE_FLOOR
from data.truth import GroundTruth
from recsys.dataset import load_dataset

CAT_OF_SUB = np.array([0, 0, 0, 1, 1, 2])  # 3 categories holding 3, 2 and 1 subcategories


def test_the_estimate_is_the_posterior_mean_by_hand():
    history = np.array([[0, 0, 3, -1, -1]])  # newest first: two clicks in sub 0, one in sub 3
    theta = estimate_interests(history, CAT_OF_SUB, recency=1.0)[0]
    a, g = CATEGORY_ALPHA, SUBCATEGORY_SHAPE
    p_cat = np.array([2 + a, 1 + a, a]) / (3 + 3 * a)
    p_sub = np.array([(2 + g) / (2 + 3 * g), g / (2 + 3 * g), g / (2 + 3 * g), (1 + g) / (1 + 2 * g),
                      g / (1 + 2 * g), 1.0])
    expected = (1 - TASTE_FLOOR) * p_cat[CAT_OF_SUB] * p_sub + TASTE_FLOOR / 6
    assert theta == pytest.approx(expected / expected.sum())
    assert theta.sum() == pytest.approx(1.0) and theta.argmax() == 0
    assert theta[1] > theta[4]  # an unclicked subcategory of the favourite category beats one of a lesser category
    empty = estimate_interests(np.full((1, 5), -1), CAT_OF_SUB)[0]
    assert empty[5] > empty[0]  # no clicks: the prior, where a category's only subcategory gets all its share


def test_recent_clicks_count_more():
    old_first = estimate_interests(np.array([[3, 0, 0, 0]]), CAT_OF_SUB, recency=0.5)[0]
    flat = estimate_interests(np.array([[3, 0, 0, 0]]), CAT_OF_SUB, recency=1.0)[0]
    assert old_first[3] > flat[3] and old_first[0] < flat[0]


def test_scores_are_the_click_model_with_estimated_interests(tmp_path):
    write_world(preset("tiny"), tmp_path)
    truth, ds = GroundTruth.load(tmp_path), load_dataset(tmp_path)
    dev = ds.dev
    off = (ds.origin.to_pydatetime() - truth.start).total_seconds()
    scores = history_oracle_scores(truth, ds.articles.news_ids, dev.history, dev.row_imp, dev.row_item,
                                   dev.row_t + off, dev.row_pos)
    assert scores.shape == dev.row_item.shape and np.all((scores > 0) & (scores < 1))
    i = int(dev.row_imp[0])  # independently for one impression: its history's subcategories, then the truth
    idx = np.array([truth.article_index[n] for n in ds.articles.news_ids])
    cats = np.unique([c for c, _ in truth.meta["subcategories"]], return_inverse=True)[1]
    hist = dev.history[i][dev.history[i] >= 0]
    theta = estimate_interests(np.array([truth.sub_idx[idx[hist]]]), cats)[0]
    rows = np.nonzero(dev.row_imp == i)[0]
    t = float(dev.row_t[rows[0]] + off)
    shown = list(ds.articles.news_ids[dev.row_item[rows]])
    user = str(dev.imp_user[i])
    # the truth's own click model for that reader, with the interests of the reader at t swapped for the estimate
    true_p = truth.click_prob(user, shown, t, positions=dev.row_pos[rows])
    theta_true = truth.interests(user, t)[truth.sub_idx[idx[dev.row_item[rows]]]]
    est = theta[truth.sub_idx[idx[dev.row_item[rows]]]]
    assert scores[rows] == pytest.approx(truth.click_prob_given(est, idx[dev.row_item[rows]], t, dev.row_pos[rows]))
    assert true_p == pytest.approx(truth.click_prob_given(theta_true, idx[dev.row_item[rows]], t, dev.row_pos[rows]))
