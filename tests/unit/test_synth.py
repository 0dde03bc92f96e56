"""The synthetic news world: determinism, MIND validity, and the invariants models rely on."""
from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data import mind
from data.events import iter_world_events
from data.synth import is_written, preset, write_world
from data.synth_world import DAY_S, PEAK_HOUR, peak_time_s
from data.truth import GroundTruth
from data.validate import validate_dir


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    write_world(preset("tiny"), out)
    return out


@pytest.fixture(scope="module")
def shown(world) -> pd.DataFrame:
    """One row per shown article, train and dev, with world seconds `t` and truth columns."""
    gt = GroundTruth.load(world)
    behaviors = pd.concat([mind.read_behaviors_table(world / s / "behaviors.tsv") for s in ("train", "dev")])
    rows = mind.explode_impressions(behaviors)
    rows["t"] = (rows["time"] - gt.start) / pd.Timedelta(seconds=1)
    idx = rows["news_id"].map(gt.article_index).to_numpy()
    rows["event"] = gt.breaking_event[idx]
    rows["publish_s"], rows["expire_s"] = gt.publish_s[idx], gt.expire_s[idx]
    rows["category"] = [gt.meta["subcategories"][s][0] for s in gt.sub_idx[idx]]
    ids, offsets, probs = gt.impression_probs()
    rows["p_true"] = probs  # impressions are written in id order, so truth aligns row by row
    assert ids.tolist() == behaviors["impression_id"].tolist()
    return rows


def test_same_seed_same_world_other_seed_other_world(world, tmp_path):
    write_world(preset("tiny"), tmp_path / "again")
    write_world(preset("tiny", seed=8), tmp_path / "other")
    for rel in ("train/news.tsv", "train/behaviors.tsv", "dev/behaviors.tsv", "news_meta.tsv", "truth/world.json"):
        assert filecmp.cmp(world / rel, tmp_path / "again" / rel, shallow=False), rel
    assert not filecmp.cmp(world / "dev/behaviors.tsv", tmp_path / "other/dev/behaviors.tsv", shallow=False)


def test_world_is_valid_mind_with_time_split(world):
    stats = validate_dir(world)
    assert {s.name for s in stats.splits} == {"train", "dev"}
    assert sum(s.behaviors for s in stats.splits) == preset("tiny").n_impressions
    train = mind.read_behaviors_table(world / "train/behaviors.tsv")
    dev = mind.read_behaviors_table(world / "dev/behaviors.tsv")
    assert train["time"].is_monotonic_increasing and dev["time"].is_monotonic_increasing
    assert train["time"].max() < dev["time"].min()  # train on the past, evaluate on the future


def test_click_rate_is_realistic_and_follows_truth(shown):
    ctr = shown["clicked"].mean()
    assert 0.02 <= ctr <= 0.12, ctr
    # clicks are drawn from the true probabilities: calibrated on average, and ranked by them
    assert abs(shown["p_true"].mean() - ctr) < 0.01
    assert shown.loc[shown.clicked == 1, "p_true"].mean() > 2 * shown.loc[shown.clicked == 0, "p_true"].mean()


def test_position_bias(shown):
    by_pos = shown.groupby("position")["clicked"].mean()
    assert by_pos.loc[0] > 2 * by_pos.loc[8]


def test_only_live_unseen_articles_are_shown(world, shown):
    assert (shown["publish_s"] <= shown["t"] + 300).all()  # the pool refreshes every 5 minutes
    assert (shown["expire_s"] > shown["t"] - 300).all()
    behaviors = mind.read_behaviors_table(world / "dev/behaviors.tsv")
    for hist, imps in zip(behaviors["history"], behaviors["impressions"]):
        assert not set(hist.split()) & {i.split("-")[0] for i in imps.split()}


def test_heavy_and_light_readers(world):
    behaviors = pd.concat([mind.read_behaviors_table(world / s / "behaviors.tsv") for s in ("train", "dev")])
    per_user = behaviors["user_id"].value_counts()
    assert per_user.head(len(per_user) // 10).sum() > 0.3 * len(behaviors)  # the top 10% read a lot
    assert (per_user <= 2).mean() > 0.05  # and many barely read


def test_interests_drift_measurably(world):
    gt = GroundTruth.load(world)
    shift = gt.meta["interest_shift"]
    t = shift["time_s"]
    shifted = shift["user_ids"]
    others = [u for u in gt.user_index if u not in set(shifted)]
    tv = lambda users: np.mean([0.5 * np.abs(gt.interests(u, t + 1) - gt.interests(u, t - 1)).sum()  # noqa: E731
                                for u in users])
    assert tv(shifted) > 0.5  # the shift event moves most of a shifted reader's interest elsewhere
    assert tv(others) < 0.05  # everyone else only drifts slowly
    # gradual drift too: interests a day apart differ for many users
    day = 86_400
    moved = [0.5 * np.abs(gt.interests(u, day) - gt.interests(u, 0)).sum() for u in others]
    assert np.mean(np.array(moved) > 0.05) > 0.15


def test_the_shift_lands_at_an_activity_peak_where_readers_read(world, shown):
    gt = GroundTruth.load(world)
    t = gt.meta["interest_shift"]["time_s"]
    cfg = preset("tiny")
    assert t % DAY_S == PEAK_HOUR * 3600 and cfg.shift_at * cfg.days * DAY_S <= t < cfg.days * DAY_S
    assert peak_time_s(0, DAY_S) == peak_time_s(PEAK_HOUR * 3600, DAY_S) == PEAK_HOUR * 3600
    assert peak_time_s(DAY_S - 1, 2 * DAY_S) == DAY_S + PEAK_HOUR * 3600
    assert peak_time_s(DAY_S - 1, DAY_S + 3600) == PEAK_HOUR * 3600  # past the window's end: the peak before
    # readers read right after it: the 30 minutes after the shift see more impressions than the average 30 minutes
    per_30min = shown.drop_duplicates("impression_id").shape[0] / (cfg.days * 48)
    after = shown[(shown.t >= t) & (shown.t < t + 1800)].impression_id.nunique()
    assert after > 1.2 * per_30min, (after, per_30min)


def test_a_world_is_written_once_per_config(world, tmp_path):
    assert is_written(preset("tiny"), world)
    assert not is_written(preset("tiny", seed=8), world) and not is_written(preset("tiny"), tmp_path)


def test_shifted_readers_click_other_categories_after_the_shift(world, shown):
    """Per reader: the share of clicks in the category the reader is most interested in after the shift. (The
    pooled category mix is a weak signal: readers jump to different categories, and a breaking story on either
    side of the shift moves the mix by itself.)"""
    gt = GroundTruth.load(world)
    t = gt.meta["interest_shift"]["time_s"]
    shifted = set(gt.meta["interest_shift"]["user_ids"])
    cats = [c for c, _ in gt.meta["subcategories"]]
    top = {u: pd.Series(gt.interests(u, t + 1)).groupby(cats).sum().idxmax() for u in gt.user_index}
    clicks = shown[shown.clicked == 1]
    in_top = clicks.category == clicks.user_id.map(top)
    share = lambda users, after: in_top[clicks.user_id.isin(users) & ((clicks.t >= t) == after)].mean()  # noqa: E731
    assert share(shifted, True) > 0.25 and share(shifted, True) > 3 * share(shifted, False)
    others = set(gt.user_index) - shifted
    assert abs(share(others, True) - share(others, False)) < 0.1


def test_breaking_news_pulls_a_large_share_of_clicks(world, shown):
    gt = GroundTruth.load(world)
    for event in gt.meta["breaking_events"]:
        t0 = event["time_s"]
        window = shown[(shown.t >= t0) & (shown.t < t0 + 3 * 3600) & (shown.clicked == 1)]
        share = (window.event == event["event"]).mean()
        live = ((gt.publish_s <= t0 + 3600) & (gt.expire_s > t0 + 3600)).sum()
        assert share > 0.2 and share > 10 * len(event["news_ids"]) / live, share


def test_truth_click_model_reproduces_logged_probabilities(world, shown):
    gt = GroundTruth.load(world)
    for imp_id in shown["impression_id"].drop_duplicates().sample(50, random_state=0):
        rows = shown[shown.impression_id == imp_id]
        got = gt.click_prob(rows.user_id.iat[0], rows.news_id.tolist(), float(rows.t.iat[0]))
        np.testing.assert_allclose(got, rows.p_true.to_numpy(), rtol=1e-5, atol=1e-7)


def test_event_mode_replays_the_same_world_in_time_order(world, shown):
    events = list(iter_world_events(world))
    times = [e.time for e in events]
    assert times == sorted(times)
    kinds = pd.Series([e.kind for e in events]).value_counts()
    assert kinds["impression"] == shown.impression_id.nunique()
    assert kinds["click"] == int(shown.clicked.sum())
    published = {}
    for e in events:
        if e.kind == "article":
            published[e.article.news_id] = e.time
        elif e.kind == "impression":
            assert all(n in published for n in e.news_ids)  # nothing is shown before its publish event
