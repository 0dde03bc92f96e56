"""The shared feature code: decayed counters against brute force, the feature matrix, the spec check."""
from __future__ import annotations

import numpy as np
import pytest

from recsys.features import FeatureSpec, RankerInputs, decayed_counts, ranker_features
from recsys.text import hash_tokens, tokenize


def test_decayed_counts_match_brute_force_over_a_long_log():
    rng = np.random.default_rng(0)
    e_key, e_t = rng.integers(0, 20, 3000), rng.uniform(0, 14 * 86_400, 3000)  # two weeks: exp() must not overflow
    q_key, q_t = rng.integers(0, 25, 500), rng.uniform(0, 14 * 86_400, 500)
    for half_life_h in (1.0, 6.0, 24.0):
        hl = half_life_h * 3600
        got = decayed_counts(e_key, e_t, q_key, q_t, hl)
        want = [np.sum(np.where((e_key == k) & (e_t < t), 2.0 ** (-(t - e_t) / hl), 0.0)) for k, t in zip(q_key, q_t)]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_events_at_or_after_the_query_time_do_not_count():
    got = decayed_counts(np.array([1, 1]), np.array([10.0, 20.0]), np.array([1, 1, 1]), np.array([10.0, 15.0, 20.0]),
                         3600.0)
    np.testing.assert_allclose(got, [0.0, 2 ** (-5 / 3600), 2 ** (-10 / 3600)])


def _spec() -> FeatureSpec:
    return FeatureSpec(categories=("<unk>", "news"), subcategories=("<unk>", "newsus"))


def test_ranker_features_columns_follow_the_spec():
    n = 4
    x = RankerInputs(two_tower_sim=np.linspace(-1, 1, n), subcategory_affinity=np.zeros(n),
                     category_affinity=np.ones(n), clicks={h: np.full(n, 3.0) for h in (1.0, 6.0, 24.0)},
                     shows_6h=np.full(n, 9.0), expected_clicks={h: np.full(n, 2.0) for h in (6.0, 24.0)}, age_h=np.array([0.0, 1.0, 5.0, -1.0]), history_len=np.full(n, 7),
                     position=np.zeros(n), user_topic_clicks={(l, h): np.ones(n) for l in ("subcategory", "category") for h in (24.0, 168.0)},
                     user_topic_expected={(l, h): np.ones(n) for l in ("subcategory", "category") for h in (24.0, 168.0)})
    spec = _spec()
    f = ranker_features(x, spec)
    assert f.shape == (n, len(spec.ranker_features)) and f.dtype == np.float32
    col = spec.ranker_features.index
    np.testing.assert_allclose(f[:, col("ctr_6h")], (3.0 + 0.05) / 10.0, rtol=1e-6)
    assert f[3, col("log_age_h")] == 0.0  # a clock skew never gives a negative age
    x.shows_6h = np.zeros(n + 1)
    with pytest.raises(ValueError, match="log_shows_6h"):
        ranker_features(x, spec)


def test_spec_round_trips_and_refuses_what_it_cannot_build():
    spec = _spec()
    assert FeatureSpec.from_json(spec.to_json()) == spec
    spec.check_buildable()
    with pytest.raises(ValueError, match="cannot build"):
        FeatureSpec.from_json(spec.to_json() | {"ranker_features": ["two_tower_sim", "weather_today"]}).check_buildable()
    with pytest.raises(ValueError, match="version"):
        FeatureSpec.from_json(spec.to_json() | {"version": 99}).check_buildable()


def test_hashed_tokens_are_stable_padded_and_bounded():
    assert tokenize('"Quoted" Title: A-B 2019') == ["quoted", "title", "a", "b", "2019"]
    ids = hash_tokens(["hurricane makes landfall", ""], buckets=1024, max_len=5)
    assert ids.shape == (2, 5) and (ids[1] == 0).all() and (ids[0, :3] > 0).all() and (ids[0, 3:] == 0).all()
    assert ids.max() < 1024
    np.testing.assert_array_equal(ids, hash_tokens(["hurricane makes landfall", ""], buckets=1024, max_len=5))
