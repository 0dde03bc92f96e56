"""MIND metrics checked against scikit-learn on the same inputs."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import ndcg_score, roc_auc_score

from recsys.metrics import per_impression_auc, ranking_metrics


def _impressions(seed: int, rounded: bool):
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(300), rng.integers(2, 40, 300))
    rng.shuffle(group)  # the metrics must not assume contiguous impressions
    label = (rng.random(group.size) < 0.15).astype(int)
    score = rng.random(group.size)
    return group, label, np.round(score, 1) if rounded else score


def _valid(group, label):
    return [g for g in np.unique(group) if 0 < label[group == g].sum() < (group == g).sum()]


@pytest.mark.parametrize("rounded", [False, True], ids=["distinct-scores", "many-ties"])
def test_auc_matches_sklearn_per_impression(rounded):
    group, label, score = _impressions(1, rounded)
    expected = [roc_auc_score(label[group == g], score[group == g]) for g in _valid(group, label)]
    np.testing.assert_allclose(per_impression_auc(group, label, score), expected, atol=1e-12)


def test_ndcg_and_mrr_match_references():
    group, label, score = _impressions(2, rounded=False)
    valid = _valid(group, label)
    m = ranking_metrics(group, label, score)
    for k, got in ((5, m.ndcg5), (10, m.ndcg10)):
        want = np.mean([ndcg_score([label[group == g]], [score[group == g]], k=k) for g in valid])
        assert got == pytest.approx(want, abs=1e-12)
    mrr = []
    for g in valid:  # MIND's mrr_score, written out
        order = np.argsort(-score[group == g], kind="stable")
        y = label[group == g][order]
        mrr.append(np.sum(y / (np.arange(y.size) + 1)) / y.sum())
    assert m.mrr == pytest.approx(np.mean(mrr), abs=1e-12)
    assert m.n_impressions == len(valid)


def test_perfect_and_reversed_scores():
    group = np.array([0, 0, 0, 1, 1, 1])
    label = np.array([1, 0, 0, 0, 1, 0])
    m = ranking_metrics(group, label, label.astype(float))
    assert (m.auc, m.mrr, m.ndcg5, m.ndcg10) == (1.0, 1.0, 1.0, 1.0)
    assert ranking_metrics(group, label, -label.astype(float)).auc == 0.0


def test_no_impression_with_both_classes_is_an_error():
    with pytest.raises(ValueError, match="both a click and a non-click"):
        ranking_metrics(np.array([0, 0]), np.array([0, 0]), np.array([0.1, 0.2]))
