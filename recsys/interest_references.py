"""How much of a reader's interest now the log reveals: two references beside `oracle_history` on synthetic worlds
(`reference_scores` returns all three).

Each is the true click model told everything about the articles (hidden quality, freshness, breaking boost, slot)
and scores the dev split's shown rows; they differ in what they are told about the reader:

- `oracle_history_shows`: the reader's click history (data.history_oracle's estimate), then every earlier show of
  the reader in the article's subcategory, clicked or not, through the click model's own likelihood: a grid
  posterior over the interest term, each show's log-likelihood decayed with a SHOW_HALF_LIFE_H half-life.
- `oracle_told_changes`: also told when each reader's interests changed and by how much (each change's mix, never
  the interests drawn), which no log reveals: each epoch's clicks estimate that epoch, weighted by what is left of
  it now; then the shows as above.

What lies between the second and the oracle is what the log cannot tell however a model learns. The constants
were picked on the small world's dev split among a few values (half-life 24 / 48 / 96 h, prior sd 0.7-2; each
reference moved by at most 0.003 AUC over them): the references are meant to be generous, not fair.
"""
from __future__ import annotations

import numpy as np

from data.clickmodel import examination
from data.history_oracle import estimate_interests, history_interests
from data.synth_world import DRIFT_MIX, SHIFT_MIX
from data.truth import GroundTruth
from recsys.dataset import Dataset, Split

SHOW_HALF_LIFE_H = 48.0
HISTORY_PRIOR_SD = 1.5  # sd of the grid prior around the estimate, in log(interest * n_subcategories)
TOLD_PRIOR_SD = 1.0
GRID = np.linspace(-5.0, 3.5, 44)  # log(interest * n_subcategories); the click model clips it to [-3, 2.5]
MAX_SHOWS = 200_000  # shows per block of the running sums (a reader's shows in a subcategory stay whole)


class LogShows:
    """Every shown row of a dataset's train and dev splits in the truth's coordinates, sorted by (reader,
    subcategory, time) so a row's earlier shows in its subcategory are one slice."""

    def __init__(self, ds: Dataset, truth: GroundTruth):
        self.truth, self.offset_s = truth, (ds.origin.to_pydatetime() - truth.start).total_seconds()
        self.to_truth = truth.rows(ds.articles.news_ids)
        splits = (ds.train, ds.dev)
        user = np.concatenate([self.users(s.imp_user[s.row_imp]) for s in splits])
        item = self.to_truth[np.concatenate([s.row_item for s in splits])]
        t_s = np.concatenate([s.row_t + self.offset_s for s in splits])
        key = self._key(user, item)
        self.order = np.lexsort((t_s, key))
        self.t_min, self.span = float(t_s.min()), float(t_s.max() - t_s.min()) + 1.0
        self.sorted_key = key[self.order]
        self.sorted_at = self.sorted_key * self.span + (t_s[self.order] - self.t_min)
        self.t_s = t_s
        self.clicked = np.concatenate([s.row_label for s in splits]) == 1
        self.exam = examination(np.concatenate([s.row_pos for s in splits]), truth.params)
        self.rest = truth.relevance_without_interest(item, t_s)

    def users(self, user_ids: np.ndarray) -> np.ndarray:
        return np.array([self.truth.user_index[u] for u in user_ids], dtype=np.int64)

    def _key(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        return user * self.truth.n_subcategories + self.truth.sub_idx[item]

    def before(self, user: np.ndarray, item: np.ndarray, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) per row: the slice of `order` holding the reader's shows in the item's subcategory before t_s."""
        key = self._key(user, item).astype(np.float64) * self.span
        lo = np.searchsorted(self.sorted_at, key, side="left")
        return lo, np.maximum(np.searchsorted(self.sorted_at, key + (t_s - self.t_min), side="left"), lo)


def show_evidence_scores(shows: LogShows, split: Split, prior_interest: np.ndarray, prior_sd: float,
                         half_life_h: float = SHOW_HALF_LIFE_H) -> np.ndarray:
    """(R,) posterior-mean click probability of `split`'s rows: a prior over each row's interest term centred on
    log(prior_interest * n_subcategories), times the decayed likelihood of the reader's earlier shows."""
    truth, params = shows.truth, shows.truth.params
    term = params.interest_weight * np.clip(GRID, params.interest_log_min, params.interest_log_max)
    user, item = shows.users(split.imp_user[split.row_imp]), shows.to_truth[split.row_item]
    t_s = split.row_t + shows.offset_s
    lo, hi = shows.before(user, item, t_s)
    centre = np.log(np.maximum(prior_interest, 1e-12) * truth.n_subcategories)
    log_post = -0.5 * ((GRID[None, :] - centre[:, None]) / prior_sd) ** 2
    # per (reader, subcategory), in time order: L_k = L_(k-1) * 2^(-(t_k - t_(k-1)) / h) + loglik_k, run for every
    # reader-subcategory of a block at once (the k-th shows together); a row adds L at its last earlier show, decayed
    rate = np.log(2.0) / (half_life_h * 3600.0)
    ends = np.r_[np.nonzero(np.diff(shows.sorted_key))[0] + 1, shows.order.size]
    a = 0
    while a < shows.order.size:
        k = int(np.searchsorted(ends, a + MAX_SHOWS, side="right")) - 1  # the last whole key within MAX_SHOWS
        b = int(ends[k]) if k >= 0 and ends[k] > a else int(ends[np.searchsorted(ends, a, side="right")])
        j = shows.order[a:b]
        p = shows.exam[j][:, None] / (1.0 + np.exp(-(shows.rest[j][:, None] + term[None, :])))
        run = np.where(shows.clicked[j][:, None], np.log(p), np.log1p(-p))
        first = np.r_[True, shows.sorted_key[a + 1:b] != shows.sorted_key[a:b - 1]]
        rank = np.arange(b - a) - np.maximum.accumulate(np.where(first, np.arange(b - a), 0))
        by_rank = np.argsort(rank, kind="stable")
        bounds = np.searchsorted(rank[by_rank], np.arange(1, rank.max() + 2))
        t_j = shows.t_s[j]
        for at in np.split(by_rank, bounds[:-1])[1:]:
            run[at] += run[at - 1] * np.exp(-rate * (t_j[at] - t_j[at - 1]))[:, None]
        rows = np.nonzero((lo >= a) & (lo < b) & (hi > lo))[0]
        last = hi[rows] - 1 - a
        log_post[rows] += run[last] * np.exp(-rate * (t_s[rows] - t_j[last]))[:, None]
        a = b
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    relevant = 1.0 / (1.0 + np.exp(-(truth.relevance_without_interest(item, t_s)[:, None] + term[None, :])))
    return examination(split.row_pos, params) * (post * relevant).sum(axis=1)


def told_changes_interests(shows: LogShows, ds: Dataset, split: Split) -> np.ndarray:
    """(I, S) interests of each impression's reader, told the times and mixes of the reader's interest changes:
    sum over epochs j of W_j * (posterior mean from the history clicks made in epoch j), W_j = mix_j * prod over
    later changes l of (1 - mix_l). History clicks from before the log fall in the first epoch."""
    truth = shows.truth
    cats = truth.category_of_subcategory
    users, t_s = shows.users(split.imp_user), split.imp_t + shows.offset_s
    shift = truth.meta["interest_shift"]
    shifted = np.isin(np.arange(len(truth.user_index)), shows.users(np.array(shift["user_ids"])))
    # each reader's changes after the first (initial) interests, padded with +inf
    lo, hi = np.searchsorted(truth.change_user, users), np.searchsorted(truth.change_user, users, side="right")
    n_max = int((hi - lo).max()) - 1
    idx = lo[:, None] + 1 + np.arange(n_max)[None, :]
    valid = idx < hi[:, None]
    c_t = np.where(valid, truth.change_time_s[np.minimum(idx, truth.change_time_s.size - 1)], np.inf)
    c_t = np.where(c_t <= t_s[:, None], c_t, np.inf)  # changes up to the impression
    mix = np.where(np.isinf(c_t), 0.0, np.where((c_t == shift["time_s"]) & shifted[users][:, None],
                                                 SHIFT_MIX, DRIFT_MIX))
    mixes = np.concatenate([np.ones((users.size, 1)), mix], axis=1)  # (I, E): the first epoch is the start
    kept = np.cumprod((1.0 - mixes)[:, ::-1], axis=1)[:, ::-1]  # kept[:, j]: what is left after changes j, j+1, ...
    weight = mixes * np.concatenate([kept[:, 1:], np.ones((users.size, 1))], axis=1)
    # when each history click was made (train and dev clicks of the log; before the log: -inf)
    clicked = {}
    for s in (ds.train, ds.dev):
        rows = np.nonzero(s.row_label == 1)[0]
        clicked.update(zip(zip(s.imp_user[s.row_imp[rows]].tolist(), s.row_item[rows].tolist()),
                           (s.row_t[rows] + shows.offset_s).tolist()))
    h_t = np.array([[clicked.get((u, int(i)), -np.inf) if i >= 0 else np.nan for i in row]
                    for u, row in zip(split.imp_user.tolist(), split.history)])
    epoch = (h_t[:, :, None] >= c_t[:, None, :]).sum(axis=2)
    hist_sub = np.where(split.history >= 0, truth.sub_idx[shows.to_truth[np.maximum(split.history, 0)]], -1)
    theta = np.zeros((users.size, truth.n_subcategories))
    for j in range(weight.shape[1]):
        theta += weight[:, j:j + 1] * estimate_interests(np.where(epoch == j, hist_sub, -1), cats, recency=1.0)
    return theta


def reference_scores(ds: Dataset, truth: GroundTruth) -> dict[str, np.ndarray]:
    """The three references' scores of the dev rows: oracle_history (data.history_oracle), then the two above."""
    shows, dev = LogShows(ds, truth), ds.dev
    idx = shows.to_truth[dev.row_item]
    history = history_interests(truth, shows.to_truth, dev.history)[dev.row_imp, truth.sub_idx[idx]]
    told = told_changes_interests(shows, ds, dev)[dev.row_imp, truth.sub_idx[idx]]
    return {"oracle_history": truth.click_prob_given(history, idx, dev.row_t + shows.offset_s, dev.row_pos),
            "oracle_history_shows": show_evidence_scores(shows, dev, history, HISTORY_PRIOR_SD),
            "oracle_told_changes": show_evidence_scores(shows, dev, told, TOLD_PRIOR_SD)}
