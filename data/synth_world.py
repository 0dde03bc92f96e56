"""The synthetic news world's static parts: presets, articles with hidden quality, and users whose interests drift.

`build_world(config)` draws everything that does not depend on the logged impressions; `data.synth` then
simulates the logging policy and the reader clicks over it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np

from data.clickmodel import ClickModelParams
from data.schema import NewsArticle
from data.synth_text import make_article
from data.vocab import subcategory_list

DAY_S = 86_400


@dataclass(frozen=True)
class WorldConfig:
    """Size and dynamics of a synthetic world. Times are seconds from `start` (negative: warm-up period)."""

    preset: str
    seed: int = 7
    n_users: int = 2_000
    n_articles: int = 3_000
    days: float = 3.0                # length of the logged window
    warmup_days: float = 2.0         # articles published before the log starts (users' prior history)
    n_impressions: int = 20_000
    min_shown: int = 10
    max_shown: int = 25
    n_breaking: int = 2
    breaking_articles: int = 12
    breaking_editorial_boost: float = 6.0  # the logging policy pushes breaking stories this much harder
    shift_at: float = 0.6            # interest shift: at this fraction of the window ...
    shift_at_peak: bool = True       # ... moved to the first daily activity peak from there (peak_time_s)
    shift_fraction: float = 0.4      # share of users whose interests jump to a new category then
    drift_per_day: float = 0.4       # gradual per-user drift events per day
    dev_days: float = 1.0            # the last `dev_days` of the log form the dev split
    history_max: int = 50
    start: str = "2019-11-09T00:00:00"
    click_model: ClickModelParams = field(default_factory=ClickModelParams)

    @property
    def start_time(self) -> datetime:
        return datetime.fromisoformat(self.start)

    def to_json(self) -> dict:
        return asdict(self)


PRESETS: dict[str, WorldConfig] = {
    "tiny": WorldConfig(preset="tiny", n_users=400, n_articles=900, days=2.0, warmup_days=1.0,
                        n_impressions=6_000, min_shown=5, max_shown=15, n_breaking=1, breaking_articles=8,
                        dev_days=0.5),
    "small": WorldConfig(preset="small", n_users=10_000, n_articles=12_000, days=5.0, warmup_days=2.0,
                         n_impressions=150_000, n_breaking=3, breaking_articles=15, dev_days=1.0),
    "large": WorldConfig(preset="large", n_users=150_000, n_articles=110_000, days=7.0, warmup_days=2.0,
                         n_impressions=1_100_000, n_breaking=5, breaking_articles=30, dev_days=1.0),
}


@dataclass
class World:
    """Everything drawn before simulation. Article arrays are indexed by article row (publish order)."""

    config: WorldConfig
    subcategories: list[tuple[str, str]]
    articles: list[NewsArticle]
    sub_idx: np.ndarray          # (A,) int: subcategory of each article
    quality: np.ndarray          # (A,) float: hidden quality, part of true relevance
    publish_s: np.ndarray        # (A,) int64
    expire_s: np.ndarray         # (A,) int64
    breaking_event: np.ndarray   # (A,) int: index into breaking_times, -1 for ordinary articles
    breaking_times_s: np.ndarray  # (E,) int64
    breaking_subs: np.ndarray    # (E,) int
    activity: np.ndarray         # (U,) float: relative reading rate (heavy/light readers)
    theta0: np.ndarray           # (U, S) float: initial true interests over subcategories
    changes_time_s: np.ndarray   # (C,) int64, sorted: interest changes (drift and the shift event)
    changes_user: np.ndarray     # (C,) int
    changes_theta: np.ndarray    # (C, S) float: the user's interests from that time on
    shifted_users: np.ndarray    # users whose interests jumped at the shift event
    shift_time_s: int

    @property
    def news_ids(self) -> list[str]:
        return [a.news_id for a in self.articles]

    @property
    def user_ids(self) -> list[str]:
        return [f"U{u + 1}" for u in range(self.config.n_users)]


PEAK_HOUR = 14.0  # the diurnal density 1 + 0.6 sin(2 pi (hour - 8) / 24) is highest at 14:00


def diurnal_times(rng: np.random.Generator, n: int, lo_s: float, hi_s: float) -> np.ndarray:
    """n sorted times in [lo_s, hi_s) whose density peaks in the daytime (reading and publishing both do)."""
    out = np.empty(0)
    while out.size < n:
        t = rng.uniform(lo_s, hi_s, size=2 * n + 16)
        hour = (t % DAY_S) / 3600.0
        keep = rng.random(t.size) < (1.0 + 0.6 * np.sin(2 * np.pi * (hour - 8.0) / 24.0)) / 1.6
        out = np.concatenate([out, t[keep]])
    return np.sort(out[:n]).astype(np.int64)


def peak_time_s(after_s: float, window_s: float) -> int:
    """The first daily activity peak at or after `after_s` (the one before it if that falls outside the window):
    an event meant to be observed must land when readers read, not at night (a shift at midnight on the small
    world met 41 impressions in its first 5 minutes)."""
    peak = PEAK_HOUR * 3600
    t = np.ceil((after_s - peak) / DAY_S) * DAY_S + peak
    return int(t if t < window_s else t - DAY_S)


# A reader's taste: Dirichlet(CATEGORY_ALPHA) over categories times, within each category, normalized
# Gamma(SUBCATEGORY_SHAPE) weights over its subcategories (a Dirichlet too), mixed with a uniform TASTE_FLOOR.
CATEGORY_ALPHA = 0.25
SUBCATEGORY_SHAPE = 0.6
TASTE_FLOOR = 0.05
# An interest change mixes the reader's interests with a new draw: theta <- (1 - mix) * theta + mix * draw.
DRIFT_MIX = 0.35  # a gradual drift event
SHIFT_MIX = 0.85  # the interest-shift event (its draw is focused on one new category)
SHIFT_FOCUS = 0.85


def _interest_draw(rng: np.random.Generator, n: int, cat_of_sub: np.ndarray, n_cats: int,
                   focus_cat: np.ndarray | None = None) -> np.ndarray:
    """(n, S) interests: a sparse taste over categories times a taste over each category's subcategories."""
    cat_pref = rng.dirichlet(np.full(n_cats, CATEGORY_ALPHA), size=n)
    if focus_cat is not None:  # a jump of interest towards one category
        cat_pref = (1.0 - SHIFT_FOCUS) * cat_pref + SHIFT_FOCUS * np.eye(n_cats)[focus_cat]
    sub_pref = rng.gamma(SUBCATEGORY_SHAPE, size=(n, cat_of_sub.size))
    sums = np.zeros((n, n_cats))
    np.add.at(sums.T, cat_of_sub, sub_pref.T)
    theta = cat_pref[:, cat_of_sub] * sub_pref / np.maximum(sums[:, cat_of_sub], 1e-12)
    theta = (1.0 - TASTE_FLOOR) * theta + TASTE_FLOOR / cat_of_sub.size
    return theta / theta.sum(axis=1, keepdims=True)


def build_world(config: WorldConfig) -> World:
    rng = np.random.default_rng(config.seed)
    subs = subcategory_list()
    cats = sorted({c for c, _ in subs}, key=[c for c, _ in subs].index)
    cat_of_sub = np.array([cats.index(c) for c, _ in subs])
    n_subs, window_s = len(subs), int(config.days * DAY_S)

    # Articles: ordinary ones over warm-up + window, then bursts for each breaking event.
    sub_share = rng.dirichlet(np.full(n_subs, 3.0))
    n_ordinary = config.n_articles - config.n_breaking * config.breaking_articles
    pub = diurnal_times(rng, n_ordinary, -config.warmup_days * DAY_S, window_s)
    sub = rng.choice(n_subs, size=n_ordinary, p=sub_share)
    event = np.full(n_ordinary, -1)
    b_times = np.sort(rng.uniform(0.15, 0.9, config.n_breaking) * window_s).astype(np.int64)
    b_subs = rng.choice(n_subs, size=config.n_breaking)
    for e, (bt, bs) in enumerate(zip(b_times, b_subs)):
        k = config.breaking_articles
        pub = np.concatenate([pub, bt + np.sort(rng.integers(0, 45 * 60, k))])
        sub = np.concatenate([sub, np.full(k, bs)])
        event = np.concatenate([event, np.full(k, e)])
    order = np.argsort(pub, kind="stable")
    pub, sub, event = pub[order], sub[order], event[order]
    lifetime_h = np.clip(rng.lognormal(np.log(20.0), 0.5, size=pub.size), 4.0, 48.0)
    lifetime_h[event >= 0] = 30.0
    quality = rng.normal(0.0, 0.6, size=pub.size) + 0.3 * (event >= 0)
    articles = [make_article(rng, f"N{10_000 + i}", subs[s][0], subs[s][1], breaking=bool(e >= 0))
                for i, (s, e) in enumerate(zip(sub, event))]

    # Users: heavy and light readers; interests drift gradually and jump at the shift event.
    activity = rng.lognormal(0.0, 1.1, size=config.n_users)
    theta0 = _interest_draw(rng, config.n_users, cat_of_sub, len(cats))
    n_drift = rng.poisson(config.drift_per_day * config.days, size=config.n_users)
    d_user = np.repeat(np.arange(config.n_users), n_drift)
    d_time = rng.uniform(0, window_s, size=d_user.size).astype(np.int64)
    shift_time = int(config.shift_at * window_s)
    if config.shift_at_peak:
        shift_time = peak_time_s(shift_time, window_s)
    shifted = np.sort(rng.choice(config.n_users, int(config.shift_fraction * config.n_users), replace=False))
    top_cat = cat_of_sub[theta0[shifted].argmax(axis=1)]
    new_cat = (top_cat + rng.integers(1, len(cats), size=shifted.size)) % len(cats)
    c_user = np.concatenate([d_user, shifted])
    c_time = np.concatenate([d_time, np.full(shifted.size, shift_time)])
    c_draw = np.concatenate([_interest_draw(rng, d_user.size, cat_of_sub, len(cats)),
                             _interest_draw(rng, shifted.size, cat_of_sub, len(cats), focus_cat=new_cat)])
    c_mix = np.concatenate([np.full(d_user.size, DRIFT_MIX), np.full(shifted.size, SHIFT_MIX)])
    order = np.argsort(c_time, kind="stable")
    c_user, c_time, c_draw, c_mix = c_user[order], c_time[order], c_draw[order], c_mix[order]
    # Each change mixes the user's interests at that moment with the draw: replay them in time order.
    theta, c_theta = theta0.copy(), np.empty_like(c_draw)
    for i, (u, m) in enumerate(zip(c_user, c_mix)):
        theta[u] = (1.0 - m) * theta[u] + m * c_draw[i]
        c_theta[i] = theta[u]
    return World(config=config, subcategories=subs, articles=articles, sub_idx=sub, quality=quality,
                 publish_s=pub, expire_s=pub + (lifetime_h * 3600).astype(np.int64), breaking_event=event,
                 breaking_times_s=b_times, breaking_subs=b_subs, activity=activity, theta0=theta0,
                 changes_time_s=c_time, changes_user=c_user, changes_theta=c_theta, shifted_users=shifted,
                 shift_time_s=shift_time)
