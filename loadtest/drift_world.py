"""The drift benchmark's view of the world: its drift events and the windows around them (truth/world.json), the
world's past as a world of its own (the frozen model is trained on it only), a reader sample, and the scoring of a
served list against the ground truth (nDCG@10 with true relevance as gain, CTR = true click probability)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path

import numpy as np

from data import mind
from data.schema import BEHAVIORS_FILE, NEWS_FILE, NEWS_META_FILE
from data.truth import TRUTH_DIR, GroundTruth
from recsys.dataset import Dataset


@dataclass(frozen=True)
class DriftEvent:
    name: str          # "interest_shift" | "breaking_<i>"
    time_s: float      # world seconds from the world's start
    detail: str


@dataclass(frozen=True)
class Window:
    """A stretch of world time replayed as one run; `events` fall inside it."""

    start_s: float
    end_s: float
    events: tuple[DriftEvent, ...]


def drift_events(truth: GroundTruth) -> list[DriftEvent]:
    """The interest shift and every breaking-news event of the world, by time."""
    shift = truth.meta["interest_shift"]
    out = [DriftEvent("interest_shift", float(shift["time_s"]), f"{len(shift['user_ids'])} readers' interests jump")]
    out += [DriftEvent(f"breaking_{e['event']}", float(e["time_s"]), "/".join(e["subcategory"]))
            for e in truth.meta["breaking_events"]]
    return sorted(out, key=lambda e: e.time_s)


def default_events(events: list[DriftEvent]) -> list[DriftEvent]:
    """The interest shift and the breaking-news event nearest to it in time."""
    shift = next(e for e in events if e.name == "interest_shift")
    breaking = [e for e in events if e.name.startswith("breaking_")]
    return sorted([shift, *sorted(breaking, key=lambda e: abs(e.time_s - shift.time_s))[:1]], key=lambda e: e.time_s)


def windows(events: list[DriftEvent], pre_s: float, post_s: float) -> list[Window]:
    """[event - pre, event + post] around each event, overlapping ones merged."""
    out: list[Window] = []
    for e in events:
        lo, hi = e.time_s - pre_s, e.time_s + post_s
        if out and lo <= out[-1].end_s:
            out[-1] = Window(out[-1].start_s, max(hi, out[-1].end_s), (*out[-1].events, e))
        else:
            out.append(Window(lo, hi, (e,)))
    return out


def past_world(world: Path, until_s: float, out: Path, dev_hours: float = 6.0) -> Path:
    """A copy of `world` whose log stops at world second `until_s`: train = before until - dev_hours, dev = the
    last dev_hours. Articles, their metadata and the truth are copied whole (articles not yet shown carry no
    label, and content-only towers have no id embedding that could learn them)."""
    start = GroundTruth.load(world).start
    until, dev_from = start + timedelta(seconds=until_s), start + timedelta(seconds=until_s - dev_hours * 3600)
    behaviors = [b for split in ("train", "dev") for b in mind.iter_behaviors(world / split / BEHAVIORS_FILE)
                 if b.time < until]
    for split, keep in (("train", lambda b: b.time < dev_from), ("dev", lambda b: b.time >= dev_from)):
        (out / split).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(world / "dev" / NEWS_FILE, out / split / NEWS_FILE)
        mind.write_behaviors(out / split / BEHAVIORS_FILE, [b for b in behaviors if keep(b)])
    shutil.copyfile(world / NEWS_META_FILE, out / NEWS_META_FILE)
    shutil.copytree(world / TRUTH_DIR, out / TRUTH_DIR, dirs_exist_ok=True)
    return out


class ActiveReaders:
    """Who reads when: the readers with a logged impression in a stretch of world time, who would get a feed from
    the system then. Scoring them (rather than a fixed sample, mostly idle in any given minute) is what recovery
    means: a reader who does not come back is served nothing, and no system can learn a shift nobody reveals.
    Readers with no history at that impression are left out (every system serves them the same trending list)."""

    def __init__(self, ds: Dataset, truth: GroundTruth):
        off = ds_offset(ds, truth)
        t = np.concatenate([sp.imp_t[sp.history_len > 0] for sp in (ds.train, ds.dev)]) + off
        u = np.concatenate([sp.imp_user[sp.history_len > 0] for sp in (ds.train, ds.dev)]).astype(str)
        order = np.argsort(t, kind="stable")
        self.t, self.user = t[order], u[order]

    def between(self, lo_s: float, hi_s: float) -> list[str]:
        """The readers with an impression in [lo_s, hi_s) (world seconds), sorted."""
        a, b = np.searchsorted(self.t, [lo_s, hi_s])
        return sorted(set(self.user[a:b].tolist()))

    def sample(self, lo_s: float, hi_s: float, n: int, seed: int) -> list[str]:
        """At most n of them (a seeded sample when more read then)."""
        readers = self.between(lo_s, hi_s)
        if len(readers) <= n:
            return readers
        return sorted(np.random.default_rng(seed).choice(readers, n, replace=False).tolist())


def ds_offset(ds: Dataset, truth: GroundTruth) -> float:
    """Dataset seconds (from its origin) + this = truth seconds (from the world's start)."""
    return (ds.origin.to_pydatetime() - truth.start).total_seconds()


class Scorer:
    """Scores a served list for a reader at a world time against the truth.

    gain = the true click probability at the top slot (relevance, position-free); nDCG@10 = DCG of the served
    top 10 / DCG of the best 10 of the live pool, the reader's earlier clicks excluded (never served again);
    CTR = mean true click probability of the served top 10 in their slots.
    """

    def __init__(self, truth: GroundTruth, ds: Dataset, readers: list[str]):
        self.truth = truth
        self.shifted = set(truth.meta["interest_shift"]["user_ids"])
        self.ids = np.array(list(truth.article_index), dtype=object)
        self.start_unix = truth.start.replace(tzinfo=UTC).timestamp()
        off, a = ds_offset(ds, truth), ds.articles
        self.read: dict[str, list[tuple[float, str]]] = {u: [] for u in readers}
        for split in (ds.train, ds.dev):
            for i in np.nonzero(np.isin(split.imp_user, readers))[0]:
                u, t = str(split.imp_user[i]), float(split.imp_t[i]) + off
                self.read[u] += [(-np.inf, str(a.news_ids[r])) for r in split.history[i] if r >= 0]
                lo, hi = np.searchsorted(split.row_imp, [i, i + 1])  # rows are grouped by impression, in order
                self.read[u] += [(t, str(a.news_ids[split.row_item[r]])) for r in range(lo, hi)
                                 if split.row_label[r] == 1]
        self.discount = 1.0 / np.log2(np.arange(2, 12))

    def clicked_between(self, user: str, lo_s: float, hi_s: float) -> bool:
        """Whether the reader clicked in [lo_s, hi_s): after an interest shift, whether the stream has carried any
        sign of the reader's new interests yet."""
        return any(lo_s <= when < hi_s for when, _ in self.read.get(user, []))

    def pool(self, user: str, t: float) -> list[str]:
        """The live articles at world second t, the reader's earlier clicks left out (never served again)."""
        tr = self.truth
        live = (tr.publish_s <= t) & (tr.expire_s > t)
        seen = {n for when, n in self.read.get(user, []) if when < t}
        return [n for n in self.ids[live] if n not in seen]

    def ideal(self, user: str, t: float) -> np.ndarray:
        """The best 10 gains of the live pool at world second t, the reader's earlier clicks left out."""
        pool = self.pool(user, t)
        return np.sort(self.truth.click_prob(user, pool, t, positions=np.zeros(len(pool))))[::-1][:10]

    def revealed_best(self, user: str, t: float, shift_s: float) -> list[str]:
        """The ceiling of any system after the interest shift at `shift_s`: the live pool ranked by the reader's
        true relevance, except that a shifted reader who has not clicked since the shift is ranked by the interests
        they had just before it. That is all the stream has told anyone: their jump to a random new category is
        unknowable until they click. (Ranking such a reader by the expected relevance over the world's own shift
        process, 40% shifted with a uniformly random new category, scored within 0.002 nDCG@10 of these lists on
        the small world: it is the Bayes choice too.)"""
        pool = self.pool(user, t)
        unrevealed = user in self.shifted and shift_s <= t and not self.clicked_between(user, shift_s, t)
        gains = self.truth.click_prob(user, pool, t, positions=np.zeros(len(pool)),
                                      interests_at_s=shift_s - 1 if unrevealed else None)
        return [pool[i] for i in np.argsort(-gains, kind="stable")[:10]]

    def score(self, user: str, served: list[str], t: float, ideal: np.ndarray) -> tuple[float, float]:
        """(nDCG@10, CTR) of `served` (best first) shown to `user` at world second t."""
        top = [n for n in served[:10] if n in self.truth.article_index]
        if not top or not ideal.size:
            return 0.0, 0.0
        gains = self.truth.click_prob(user, top, t, positions=np.zeros(len(top)))
        ndcg = float(gains @ self.discount[:len(top)] / (ideal @ self.discount[:ideal.size]))
        return ndcg, float(self.truth.click_prob(user, top, t).mean())
