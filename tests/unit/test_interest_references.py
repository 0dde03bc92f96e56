"""The interest references of recsys.interest_references, each checked against a direct computation on the tiny
world: the show evidence against a plain loop over the reader's earlier shows through the truth's click model, and
the change-told interests against epochs worked out from the truth's change times and the log's click times."""
from __future__ import annotations

import numpy as np
import pytest

from data.history_oracle import estimate_interests
from data.synth import preset, write_world
from data.synth_world import DRIFT_MIX, SHIFT_MIX, TASTE_FLOOR
from data.truth import GroundTruth
from recsys.dataset import load_dataset
from recsys import interest_references
from recsys.interest_references import GRID, LogShows, show_evidence_scores, told_changes_interests


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    write_world(preset("tiny"), path)
    truth, ds = GroundTruth.load(path), load_dataset(path)
    return truth, ds, LogShows(ds, truth)


def _all_shows(ds, offset_s):
    """(user id, article row, truth time, slot, clicked) of every shown row, train and dev."""
    parts = [(s.imp_user[s.row_imp], s.row_item, s.row_t + offset_s, s.row_pos, s.row_label == 1)
             for s in (ds.train, ds.dev)]
    return [np.concatenate(p) for p in zip(*parts)]


def test_show_evidence_is_the_decayed_posterior_over_earlier_shows(world):
    truth, ds, shows = world
    dev, half_life_h, sd = ds.dev, 30.0, 1.2
    rng = np.random.default_rng(0)
    prior = rng.uniform(0.002, 0.2, dev.row_item.size)
    scores = show_evidence_scores(shows, dev, prior, sd, half_life_h)
    user, item, t, pos, clicked = _all_shows(ds, shows.offset_s)
    to_truth = shows.to_truth
    n_subs = truth.n_subcategories
    checked_with_shows = 0
    for r in rng.choice(dev.row_item.size, 150, replace=False):
        r_user, r_idx = dev.imp_user[dev.row_imp[r]], to_truth[dev.row_item[r]]
        r_t = dev.row_t[r] + shows.offset_s
        earlier = np.nonzero((user == r_user) & (truth.sub_idx[to_truth[item]] == truth.sub_idx[r_idx])
                             & (t < r_t))[0]
        log_post = -0.5 * ((GRID - np.log(prior[r] * n_subs)) / sd) ** 2
        for j in earlier:
            p = np.array([truth.click_prob_given(np.array([np.exp(g) / n_subs]), to_truth[item[j:j + 1]], t[j],
                                                 pos[j:j + 1])[0] for g in GRID])
            log_post += 0.5 ** ((r_t - t[j]) / (half_life_h * 3600)) * (np.log(p) if clicked[j] else np.log1p(-p))
        post = np.exp(log_post - log_post.max())
        post /= post.sum()
        p_row = np.array([truth.click_prob_given(np.array([np.exp(g) / n_subs]), np.array([r_idx]), r_t,
                                                 dev.row_pos[r:r + 1])[0] for g in GRID])
        assert scores[r] == pytest.approx(post @ p_row, rel=1e-6)
        checked_with_shows += earlier.size > 0
    assert checked_with_shows > 30  # most sampled rows have earlier shows to weigh


@pytest.mark.parametrize("block", [1, 7, 500])
def test_blocks_of_any_size_give_the_same_scores(world, monkeypatch, block):
    truth, ds, shows = world
    prior = np.full(ds.dev.row_item.size, 1.0 / truth.n_subcategories)
    whole = show_evidence_scores(shows, ds.dev, prior, 1.0)  # the tiny world's shows fit one block
    monkeypatch.setattr(interest_references, "MAX_SHOWS", block)
    assert np.array_equal(show_evidence_scores(shows, ds.dev, prior, 1.0), whole)


def test_show_evidence_moves_the_estimate_the_way_the_shows_point(world):
    truth, ds, shows = world
    dev = ds.dev
    prior = np.full(dev.row_item.size, 1.0 / truth.n_subcategories)
    lo, hi = shows.before(shows.users(dev.imp_user[dev.row_imp]), shows.to_truth[dev.row_item],
                          dev.row_t + shows.offset_s)
    without = show_evidence_scores(shows, dev, prior, 1.0, half_life_h=1e-9)  # every show decayed away
    with_shows = show_evidence_scores(shows, dev, prior, 1.0)
    clicks_before = np.array([shows.clicked[shows.order[a:b]].sum() for a, b in zip(lo, hi)])
    only_misses = (hi - lo >= 3) & (clicks_before == 0)
    mostly_clicks = (clicks_before >= 2) & (clicks_before >= (hi - lo) / 2)
    assert only_misses.sum() > 20 and mostly_clicks.sum() > 5
    assert np.all(with_shows[only_misses] < without[only_misses])
    assert np.all(with_shows[mostly_clicks] > without[mostly_clicks])
    assert np.array_equal(with_shows[hi == lo], without[hi == lo])  # no earlier show: the prior alone


def test_the_mixes_told_are_the_worlds(world):
    """Each change mixed the reader's interests with a draw: undoing it with the mix told must leave a taste, no
    subcategory below the floor every draw has (a shift undone with the drift's mix goes negative)."""
    truth, _, _ = world
    shift = truth.meta["interest_shift"]
    shifted = {truth.user_index[u] for u in shift["user_ids"]}
    floor = TASTE_FLOOR / truth.n_subcategories
    undone = 0
    for k in range(1, truth.change_user.size):
        u = truth.change_user[k]
        if truth.change_user[k - 1] != u:
            continue  # the reader's initial interests
        m = SHIFT_MIX if (truth.change_time_s[k] == shift["time_s"] and u in shifted) else DRIFT_MIX
        draw = (truth.change_theta[k] - (1 - m) * truth.change_theta[k - 1]) / m
        assert draw.min() >= floor - 1e-5 and draw.sum() == pytest.approx(1.0, abs=1e-4)
        undone += 1
    assert undone > 100


def test_told_changes_weighs_each_epochs_clicks_by_what_is_left_of_it(world):
    truth, ds, shows = world
    dev = ds.dev
    theta = told_changes_interests(shows, ds, dev)
    cats = np.unique([c for c, _ in truth.meta["subcategories"]], return_inverse=True)[1]
    shift = truth.meta["interest_shift"]
    user, item, t, _, clicked = _all_shows(ds, shows.offset_s)
    seen = {"none": 0, "one or more": 0}
    for i in range(dev.imp_id.size):
        u = truth.user_index[dev.imp_user[i]]
        now = dev.imp_t[i] + shows.offset_s
        times = truth.change_time_s[truth.change_user == u][1:]  # after the initial interests
        times = np.sort(times[times <= now])
        hist = dev.history[i][dev.history[i] >= 0]
        when = []
        for a in hist:
            made = np.nonzero((user == dev.imp_user[i]) & (item == a) & clicked)[0]
            when.append(t[made[0]] if made.size else -np.inf)  # before the log: the first epoch
        epoch = np.searchsorted(times, np.array(when), side="right")
        mixes = [1.0] + [SHIFT_MIX if (c == shift["time_s"] and dev.imp_user[i] in shift["user_ids"]) else DRIFT_MIX
                         for c in times]
        expected = np.zeros(truth.n_subcategories)
        for j, m in enumerate(mixes):
            left = np.prod([1.0 - x for x in mixes[j + 1:]])
            subs = truth.sub_idx[shows.to_truth[hist[epoch == j]]]
            expected += m * left * estimate_interests(np.array([np.r_[subs, -1]]), cats, recency=1.0)[0]
        assert theta[i] == pytest.approx(expected)
        seen["none" if times.size == 0 else "one or more"] += 1
        if min(seen.values()) >= 20 and i > 300:
            break
    assert min(seen.values()) >= 20  # readers without changes and readers with some were both checked
    assert theta.sum(axis=1) == pytest.approx(np.ones(dev.imp_id.size))
