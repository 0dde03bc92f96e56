"""`newsrec data synth`: simulate a logging policy and readers over the synthetic world, write MIND + truth.

Impressions are processed in time order in 5-minute buckets: the logging policy (popularity, freshness and an
editorial push for breaking stories, plus uniform exploration) picks and orders what each reader is shown, and
the true click model (data.clickmodel) draws the clicks. Output: DIR/train, DIR/dev (MIND), DIR/news_meta.tsv,
DIR/truth (see data.truth).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from itertools import chain
from pathlib import Path

import numpy as np

from data import mind
from data.clickmodel import breaking_boost, click_probability
from data.schema import BEHAVIORS_FILE, NEWS_FILE, NEWS_META_FILE, NewsMeta, format_mind_time
from data.synth_world import DAY_S, PRESETS, World, WorldConfig, build_world, diurnal_times
from data.truth import TruthWriter

BUCKET_S = 300
POPULARITY_HALF_LIFE_S = 6 * 3600
EXPLORATION_SHARE = 0.3


def _prior_history(world: World, rng: np.random.Generator) -> list[list[int]]:
    """Each user's clicks before the log starts: warm-up articles drawn by interest, heavy readers read more."""
    warm = np.nonzero(world.publish_s < 0)[0]
    by_sub = [warm[world.sub_idx[warm] == s] for s in range(len(world.subcategories))]
    rel_activity = np.clip(world.activity / world.activity.mean(), 0.1, 4.0)
    n_hist = np.minimum(rng.poisson(1.0 + 12.0 * rel_activity), world.config.history_max)
    histories = []
    for u, n in enumerate(n_hist):
        picks = []
        for s in rng.choice(len(by_sub), size=n, p=world.theta0[u]):
            if by_sub[s].size:
                picks.append(int(by_sub[s][rng.integers(by_sub[s].size)]))
        histories.append(sorted(set(picks), key=lambda a: world.publish_s[a]))
    return histories


def _simulate(world: World, rng: np.random.Generator, truth: TruthWriter) -> Iterator[tuple[bool, tuple]]:
    """Yield (is_dev, behaviors row as 5 strings) in time order; record true click probabilities in `truth`."""
    cfg, params = world.config, world.config.click_model
    n_subs, window_s = len(world.subcategories), int(cfg.days * DAY_S)
    dev_from_s = window_s - int(cfg.dev_days * DAY_S)
    times = diurnal_times(rng, cfg.n_impressions, 0, cfg.days * DAY_S)
    users = rng.choice(cfg.n_users, size=times.size, p=world.activity / world.activity.sum())
    histories = _prior_history(world, rng)
    theta = world.theta0.copy()
    news_ids = np.array(world.news_ids)
    popularity = np.zeros(len(world.articles))  # clicks with exponential decay: the logging policy's signal
    event_time = np.where(world.breaking_event >= 0, world.breaking_times_s[world.breaking_event], 0)
    next_change, start = 0, cfg.start_time
    decay = 0.5 ** (BUCKET_S / POPULARITY_HALF_LIFE_S)
    i = 0
    for t0 in range(0, window_s, BUCKET_S):
        live = np.nonzero((world.publish_s <= t0) & (world.expire_s > t0))[0]
        age_h = (t0 - world.publish_s[live]) / 3600.0
        since_break = np.where(world.breaking_event[live] >= 0, (t0 - event_time[live]) / 3600.0, np.nan)
        editorial = 1.0 + cfg.breaking_editorial_boost * breaking_boost(since_break, params) / params.breaking_boost
        weight = (popularity[live] + 1.0) ** 0.8 * np.exp(-age_h / 12.0) * editorial
        p_log = (1 - EXPLORATION_SHARE) * weight / weight.sum() + EXPLORATION_SHARE / live.size
        cdf = np.cumsum(p_log)
        cdf /= cdf[-1]
        popularity *= decay
        while i < times.size and times[i] < t0 + BUCKET_S:
            t, u = int(times[i]), int(users[i])
            while next_change < world.changes_time_s.size and world.changes_time_s[next_change] <= t:
                theta[world.changes_user[next_change]] = world.changes_theta[next_change]
                next_change += 1
            n = int(rng.integers(cfg.min_shown, cfg.max_shown + 1))
            draws = np.searchsorted(cdf, rng.random(2 * n))
            _, first = np.unique(draws, return_index=True)
            seen = set(histories[u])
            cand = [c for c in draws[np.sort(first)] if live[c] not in seen][:n]
            order = np.argsort(-(np.log(p_log[cand]) + rng.gumbel(size=len(cand))))
            shown = live[np.asarray(cand, dtype=np.int64)[order]]
            b_hours = np.where(world.breaking_event[shown] >= 0, (t - event_time[shown]) / 3600.0, np.nan)
            probs = click_probability(theta[u, world.sub_idx[shown]], world.quality[shown],
                                      (t - world.publish_s[shown]) / 3600.0, breaking_boost(b_hours, params),
                                      np.arange(shown.size), n_subs, params)
            clicked = rng.random(shown.size) < probs
            imp_id = i + 1
            truth.add_impression(imp_id, probs)
            row = (str(imp_id), f"U{u + 1}", format_mind_time(start + timedelta(seconds=t)),
                   " ".join(news_ids[histories[u][-cfg.history_max:]]),
                   " ".join(f"{nid}-{int(c)}" for nid, c in zip(news_ids[shown], clicked)))
            yield t >= dev_from_s, row
            histories[u].extend(int(a) for a in shown[clicked])
            np.add.at(popularity, shown[clicked], 1.0)
            i += 1


def _rows_until_dev(rows: Iterator[tuple[bool, tuple]], carry: list) -> Iterator[tuple]:
    for is_dev, row in rows:
        if is_dev:
            carry.append(row)
            return
        yield row


def write_world(config: WorldConfig, out_dir: Path) -> World:
    """Build, simulate and write a world to `out_dir`; deterministic for a given config (seed included)."""
    out_dir = Path(out_dir)
    world = build_world(config)
    rng = np.random.default_rng([config.seed, 1])
    start, window_s = config.start_time, int(config.days * DAY_S)
    dev_from_s = window_s - int(config.dev_days * DAY_S)
    for split in ("train", "dev"):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    to_time = lambda s: start + timedelta(seconds=int(s))  # noqa: E731
    mind.write_news(out_dir / "train" / NEWS_FILE,
                    (a for a, p in zip(world.articles, world.publish_s) if p < dev_from_s))
    mind.write_news(out_dir / "dev" / NEWS_FILE, (a for a, p in zip(world.articles, world.publish_s) if p < window_s))
    mind.write_news_meta(out_dir / NEWS_META_FILE,
                         (NewsMeta(a.news_id, to_time(p), to_time(e))
                          for a, p, e in zip(world.articles, world.publish_s, world.expire_s) if p < window_s))
    truth = TruthWriter(out_dir)
    rows, carry = _simulate(world, rng, truth), []
    mind.write_behaviors_rows(out_dir / "train" / BEHAVIORS_FILE, _rows_until_dev(rows, carry))
    mind.write_behaviors_rows(out_dir / "dev" / BEHAVIORS_FILE, chain(carry, (r for _, r in rows)))
    truth.finish(world)
    return world


def is_written(config: WorldConfig, out_dir: Path) -> bool:
    """Whether `out_dir` holds the world `config` draws: its truth was written from this very config (a world
    written before a config field was added or changed is not, and callers that write "once" rewrite it)."""
    meta = Path(out_dir) / "truth" / "world.json"
    return meta.exists() and json.loads(meta.read_text()).get("config") == json.loads(json.dumps(config.to_json()))


def preset(name: str, seed: int | None = None) -> WorldConfig:
    """A named preset (tiny, small, large), optionally with another seed."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name] if seed is None else replace(PRESETS[name], seed=seed)
