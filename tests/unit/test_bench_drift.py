"""The drift benchmark's pure parts: event windows, the world's past as a world, the truth-based scoring (checked
against a direct computation from the click model), the recovery figures, and the simulated clock."""
from __future__ import annotations

import numpy as np
import pytest

from data.clickmodel import breaking_boost, click_probability
from data.synth import preset, write_world
from data.truth import GroundTruth
from loadtest.drift_report import _below_stretches, event_summary, summarize
from loadtest.drift_stack import SimClock
from loadtest.drift_world import (ActiveReaders, DriftEvent, Scorer, Window, default_events, drift_events,
                                  past_world, windows)
from recsys.dataset import load_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    write_world(preset("tiny"), root)
    return root, GroundTruth.load(root), load_dataset(root)


def test_windows_merge_overlaps_and_default_events_pick_the_nearest_breaking_news():
    a, b, c = DriftEvent("interest_shift", 1_000, ""), DriftEvent("breaking_0", 2_000, ""), \
        DriftEvent("breaking_1", 9_000, "")
    assert windows([a, b, c], 600, 600) == [Window(400, 2_600, (a, b)), Window(8_400, 9_600, (c,))]
    assert default_events([c, a, b]) == [a, b]


def test_past_world_keeps_only_the_log_before_the_cut(tiny, tmp_path):
    world, truth, ds = tiny
    (shift,) = [e for e in drift_events(truth) if e.name == "interest_shift"]
    past = load_dataset(past_world(world, shift.time_s, tmp_path / "past", dev_hours=3))
    cut = shift.time_s - (ds.origin.to_pydatetime() - truth.start).total_seconds()
    assert past.train.imp_t.max() < cut - 3 * 3600 <= past.dev.imp_t.min() and past.dev.imp_t.max() < cut
    assert past.train.imp_t.size + past.dev.imp_t.size == int((ds.train.imp_t < cut).sum() + (ds.dev.imp_t < cut)
                                                              .sum())
    assert len(past.articles.news_ids) == len(ds.articles.news_ids)


def test_scorer_matches_the_click_model_and_asks_the_readers_active_then(tiny):
    world, truth, ds = tiny
    (shift,) = [e for e in drift_events(truth) if e.name == "interest_shift"]
    active = ActiveReaders(ds, truth)
    lo, hi = shift.time_s, shift.time_s + 1_800
    readers = active.between(lo, hi)
    # independently: the readers of the impressions logged then (with a history), from the MIND files
    off = (ds.origin.to_pydatetime() - truth.start).total_seconds()
    logged = {str(sp.imp_user[i]) for sp in (ds.train, ds.dev) for i in range(sp.imp_t.size)
              if lo <= sp.imp_t[i] + off < hi and sp.history_len[i] > 0}
    assert readers == sorted(logged) and len(readers) >= 10  # the shift lands at a busy hour
    assert active.sample(lo, hi, 5, seed=0) == active.sample(lo, hi, 5, seed=0) and \
        len(set(active.sample(lo, hi, 5, seed=0)) & set(readers)) == 5
    scorer = Scorer(truth, ds, readers)
    clicker = next(u for u in readers if scorer.clicked_between(u, lo, hi))
    assert not scorer.clicked_between(clicker, hi, hi + 1)
    user, t = readers[0], shift.time_s + 60
    ideal = scorer.ideal(user, t)
    live = np.nonzero((truth.publish_s <= t) & (truth.expire_s > t))[0]
    served = [scorer.ids[i] for i in live[:10]]
    ndcg, ctr = scorer.score(user, served, t, ideal)
    # independently: relevance from the click model at slot 0 for the gains, the real slots for the CTR
    idx = np.array([truth.article_index[n] for n in served])
    args = (truth.interests(user, t)[truth.sub_idx[idx]], truth.quality[idx], (t - truth.publish_s[idx]) / 3600.0,
            np.zeros(10))
    gains = click_probability(*args, np.zeros(10), truth.n_subcategories, truth.params)
    expected = (gains / np.log2(np.arange(2, 12))).sum() / (ideal / np.log2(np.arange(2, 12))).sum()
    assert not (truth.breaking_event[idx] >= 0).any()  # before the breaking news: no boost term to add
    assert ndcg == pytest.approx(expected)
    assert ctr == pytest.approx(click_probability(*args, np.arange(10), truth.n_subcategories, truth.params).mean())
    assert 0 < ndcg <= 1 and np.all(np.diff(ideal) <= 0)
    assert scorer.score(user, [], t, ideal) == (0.0, 0.0)


def test_the_ceiling_knows_only_what_the_stream_revealed(tiny):
    world, truth, ds = tiny
    (shift,) = [e for e in drift_events(truth) if e.name == "interest_shift"]
    t = shift.time_s + 1_800
    scorer = Scorer(truth, ds, ActiveReaders(ds, truth).between(shift.time_s - 3_600, t + 3_600))
    shifted = set(truth.meta["interest_shift"]["user_ids"])
    silent = [u for u in scorer.read if u in shifted and not scorer.clicked_between(u, shift.time_s, t)]
    told = [u for u in scorer.read if u in shifted and scorer.clicked_between(u, shift.time_s, t)]
    others = [u for u in scorer.read if u not in shifted]
    assert silent and told and others
    event_s = np.array([e["time_s"] for e in truth.meta["breaking_events"]], float)

    def best_by_interests(user: str, at_s: float) -> list[str]:  # independently, from the click model
        pool = scorer.pool(user, t)
        idx = np.array([truth.article_index[n] for n in pool])
        ev = truth.breaking_event[idx]
        boost = breaking_boost(np.where(ev >= 0, (t - event_s[np.maximum(ev, 0)]) / 3600.0, np.nan), truth.params)
        gains = click_probability(truth.interests(user, at_s)[truth.sub_idx[idx]], truth.quality[idx],
                                  (t - truth.publish_s[idx]) / 3600.0, boost, np.zeros(idx.size),
                                  truth.n_subcategories, truth.params)
        return [pool[i] for i in np.argsort(-gains, kind="stable")[:10]]

    for user in others + told:  # what they like now is known (never shifted, or clicked since): the oracle's list
        assert scorer.revealed_best(user, t, shift.time_s) == best_by_interests(user, t)
        assert scorer.score(user, scorer.revealed_best(user, t, shift.time_s), t, scorer.ideal(user, t))[0] == \
            pytest.approx(1.0)
    moved = 0
    for user in silent:  # a jump nobody has seen: ranked by the interests from before it, and worse for it
        best = scorer.revealed_best(user, t, shift.time_s)
        assert best == best_by_interests(user, shift.time_s - 1)
        ndcg = scorer.score(user, best, t, scorer.ideal(user, t))[0]
        assert ndcg <= 1.0 + 1e-9
        moved += ndcg < 0.99
    assert moved >= len(silent) / 2
    before = shift.time_s - 600  # before the shift, nobody's jump is hidden
    assert all(scorer.revealed_best(u, before, shift.time_s) == scorer.revealed_best(u, before, np.inf)
               for u in silent[:3])


def test_recovery_is_the_longest_stretch_below_90_percent():
    t = np.array([0, 60, 120, 180, 240, 300, 360.0])
    assert _below_stretches(t, np.array([1, 0, 0, 1, 1, 0, 1], bool), 420) == (2.0, True)
    assert _below_stretches(t, np.array([1, 1, 1, 1, 1, 1, 0], bool), 420) == (1.0, False)
    points = [{"t_s": float(s), "system": "online", "ndcg10": v, "ctr": v / 10, "ndcg10_shifted": None, "readers": 3}
              for s, v in zip(range(0, 1_200, 60), [0.5] * 10 + [0.3, 0.3, 0.5] + [0.5] * 7)]
    m = event_summary(points, "online", 600, 600, 1_200)
    assert m["pre_ndcg10"] == pytest.approx(0.5) and m["longest_below_90pct_min"] == 2.0
    assert m["recovery_target_met"] and m["first_at_90pct_min"] == 2.0 and m["min_post_ndcg10"] == 0.3
    quiet = {"t_s": 630.0, "system": "online", "ndcg10": None, "ctr": None, "ndcg10_shifted": None, "readers": 0}
    assert event_summary([*points, quiet], "online", 600, 600, 1_200) == m  # a minute nobody read: left out
    assert event_summary(points, "online", 0, 600, 1_200) == {"measured": False}  # no instant before it
    results = {"config": {"pre_min": 10, "post_min": 10}, "systems": ["online", "features_streamed", "frozen"],
               "windows": [{"events": [{"name": "e", "time_s": 600.0}],
                            "points": points + [dict(p, system=s, ndcg10=p["ndcg10"] - 0.1, ctr=p["ctr"] - 0.01)
                                                for p in points for s in ("features_streamed", "frozen")]}]}
    summarize(results)
    assert results["windows"][0]["summary"]["e"]["online_beats_both"] == {"post_ndcg10": True, "post_ctr": True}
    assert "revealed_oracle" not in results["windows"][0]["summary"]["e"]  # a window without the ceiling's points
    results["ceiling"] = "revealed_oracle"
    results["windows"][0]["points"] += [dict(p, system="revealed_oracle", ndcg10=1.0 if p["t_s"] < 600 else 0.8)
                                        for p in points]
    summarize(results)
    ceiling = results["windows"][0]["summary"]["e"]["revealed_oracle"]
    assert ceiling["pre_ndcg10"] == 1.0 and ceiling["first5_ndcg10"] == pytest.approx(0.8)
    assert not ceiling["recovery_target_met"]  # the best any system could do stays below 90%: the target can't be met
    share = results["windows"][0]["summary"]["e"]["online"]["share_of_ceiling"]  # 0.5 / 1.0 before; 0.3 / 0.8 ...
    assert share["pre"] == pytest.approx(0.5) and share["first5"] == pytest.approx((0.3 + 0.3 + 3 * 0.5) / 5 / 0.8)
    assert share["first5_of_pre"] == pytest.approx(share["first5"] / 0.5)
    assert share["minutes_below_90pct_of_pre"] == 2 and share["minutes_after"] == 10


def test_sim_clock_and_the_serving_clock_agree():
    clock = SimClock(start_unix=1_573_000_000.0, wall0=1_800_000_000.0, speedup=15.0)
    env = clock.serve_env()
    offset, speed, origin = (float(env[k]) for k in ("NEWSREC_CLOCK_OFFSET_S", "NEWSREC_CLOCK_SPEEDUP",
                                                     "NEWSREC_CLOCK_WALL_ORIGIN_S"))
    for wall in (1_799_999_000.0, 1_800_000_000.0, 1_800_000_123.5):
        serving_now = wall + offset + (wall - origin) * (speed - 1)  # serving.app's clock
        assert serving_now == pytest.approx(clock.world_at(wall), abs=1e-3)
        assert clock.wall_at(clock.world_at(wall)) == pytest.approx(wall)
