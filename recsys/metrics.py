"""MIND ranking metrics computed per impression, vectorized over a flat list of shown items.

Inputs are flat arrays over all shown items plus `group` (the impression each item belongs to, contiguous or
not). Impressions without both a click and a non-click are left out, as in the MIND evaluation script.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RankingMetrics:
    auc: float
    mrr: float
    ndcg5: float
    ndcg10: float
    n_impressions: int

    def to_json(self) -> dict:
        return {"auc": self.auc, "mrr": self.mrr, "ndcg5": self.ndcg5, "ndcg10": self.ndcg10,
                "n_impressions": self.n_impressions}


def _sorted_view(group: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order by (group, key) stably; return order, group starts (in sorted order) and each item's group start."""
    order = np.lexsort((key, group))
    g = group[order]
    new = np.r_[True, g[1:] != g[:-1]]
    starts = np.nonzero(new)[0]
    return order, starts, starts[np.cumsum(new) - 1]


def per_impression_auc(group: np.ndarray, label: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of each impression with both classes (ties count half), shape (n_valid_impressions,)."""
    group, label, score = np.asarray(group), np.asarray(label).astype(bool), np.asarray(score, np.float64)
    order, starts, item_start = _sorted_view(group, score)
    s, y = score[order], label[order]
    pos_in_group = np.arange(s.size) - item_start + 1.0
    # average ranks over runs of equal scores inside a group
    run_new = np.r_[True, (s[1:] != s[:-1]) | (item_start[1:] != item_start[:-1])]
    run_id = np.cumsum(run_new) - 1
    avg_rank = (np.bincount(run_id, pos_in_group) / np.bincount(run_id))[run_id]
    gid = np.cumsum(np.r_[True, item_start[1:] != item_start[:-1]]) - 1
    n_pos = np.bincount(gid, y)
    n_all = np.bincount(gid)
    n_neg = n_all - n_pos
    rank_sum = np.bincount(gid, avg_rank * y)
    ok = (n_pos > 0) & (n_neg > 0)
    return (rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2.0) / (n_pos[ok] * n_neg[ok])


def _per_impression_rank_metrics(group, label, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MRR, nDCG@5, nDCG@10 per impression with both classes; ties keep the shown order (stable sort)."""
    group, label, score = np.asarray(group), np.asarray(label).astype(np.float64), np.asarray(score, np.float64)
    order = np.lexsort((np.arange(score.size), -score, group))
    g, y = group[order], label[order]
    new = np.r_[True, g[1:] != g[:-1]]
    gid = np.cumsum(new) - 1
    rank = np.arange(y.size) - np.nonzero(new)[0][gid] + 1.0
    n_pos = np.bincount(gid, y)
    n_all = np.bincount(gid)
    ok = (n_pos > 0) & (n_pos < n_all)
    mrr = np.bincount(gid, y / rank) / np.maximum(n_pos, 1)
    out = [mrr[ok]]
    for k in (5, 10):
        gain = np.where(rank <= k, (2.0 ** y - 1.0) / np.log2(rank + 1.0), 0.0)
        dcg = np.bincount(gid, gain)
        ideal_ranks = np.arange(1, k + 1)
        ideal_cum = np.r_[0.0, np.cumsum(1.0 / np.log2(ideal_ranks + 1.0))]
        idcg = ideal_cum[np.minimum(n_pos, k).astype(int)]
        out.append(dcg[ok] / idcg[ok])
    return out[0], out[1], out[2]


def ranking_metrics(group: np.ndarray, label: np.ndarray, score: np.ndarray) -> RankingMetrics:
    """Mean AUC, MRR, nDCG@5 and nDCG@10 over impressions that have a click and a non-click."""
    auc = per_impression_auc(group, label, score)
    mrr, n5, n10 = _per_impression_rank_metrics(group, label, score)
    if auc.size == 0:
        raise ValueError("no impression has both a click and a non-click: metrics are undefined")
    return RankingMetrics(auc=float(auc.mean()), mrr=float(mrr.mean()), ndcg5=float(n5.mean()),
                          ndcg10=float(n10.mean()), n_impressions=int(auc.size))
