"""Two-tower training helpers: live-pool negative sampling and user-tower inputs."""
from __future__ import annotations

import numpy as np
import torch

from recsys.retrieval import profile_features, sample_live, user_inputs


def test_sample_live_returns_only_articles_live_at_each_time():
    rng = np.random.default_rng(0)
    publish = rng.uniform(0, 10 * 86_400, 2_000)
    expire = publish + rng.uniform(4, 48, 2_000) * 3600
    at = rng.uniform(86_400, 10 * 86_400, 5_000)
    picks = sample_live(publish, expire, at, rng)
    ok = picks >= 0
    assert ok.mean() > 0.99
    assert (publish[picks[ok]] <= at[ok]).all() and (expire[picks[ok]] > at[ok]).all()
    assert np.unique(picks[ok]).size > 1_000  # spread over the pool, not a few favourites


def test_sample_live_says_minus_one_when_nothing_is_live():
    picks = sample_live(np.array([100.0]), np.array([200.0]), np.array([50.0, 300.0]), np.random.default_rng(0))
    assert picks.tolist() == [-1, -1]


def test_user_inputs_mask_padding_in_numpy_and_torch():
    vecs = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    history = np.array([[2, 0, -1], [-1, -1, -1]])
    x = user_inputs(history, vecs)
    np.testing.assert_array_equal(x["hist_mask"], [[1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(x["hist_vecs"][0, 0], vecs[2])
    assert (x["hist_vecs"][0, 2] == 0).all() and (x["hist_vecs"][1] == 0).all()
    np.testing.assert_allclose(x["profile"], profile_features(np.array([2, 0])))
    t = user_inputs(history, torch.from_numpy(vecs))
    np.testing.assert_array_equal(t["hist_vecs"].numpy(), x["hist_vecs"])
