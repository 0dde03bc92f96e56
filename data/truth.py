"""The news world's ground truth: what real logs never have, written beside the MIND files and read back.

DIR/truth/world.json     config, subcategory axes, click-model parameters, breaking events, the interest shift
DIR/truth/articles.tsv   news_id, subcategory index, hidden quality, publish/expire seconds, breaking event
DIR/truth/interests.npz  every user's true interests over time (initial + each change)
DIR/truth/click_probs.npz the true click probability of every shown item, aligned with behaviors.tsv
`GroundTruth.click_prob` scores any list served to any user at any time, so online systems can be judged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from data.clickmodel import ClickModelParams, breaking_boost, click_probability, relevance

if TYPE_CHECKING:
    from data.synth_world import World

TRUTH_DIR = "truth"


class TruthWriter:
    """Collects per-impression true click probabilities during simulation, then writes all truth files."""

    def __init__(self, out_dir: Path):
        self.dir = Path(out_dir) / TRUTH_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ids: list[int] = []
        self._probs: list[np.ndarray] = []

    def add_impression(self, impression_id: int, probs: np.ndarray) -> None:
        self._ids.append(impression_id)
        self._probs.append(probs.astype(np.float32))

    def finish(self, world: World) -> None:
        cfg = world.config
        lengths = np.array([p.size for p in self._probs], dtype=np.int64)
        np.savez_compressed(self.dir / "click_probs.npz", impression_id=np.array(self._ids, dtype=np.int64),
                            offsets=np.concatenate([[0], np.cumsum(lengths)]),
                            probs=np.concatenate(self._probs) if self._probs else np.zeros(0, np.float32))
        n_users = cfg.n_users
        np.savez_compressed(
            self.dir / "interests.npz",
            user_id=np.array(world.user_ids),
            time_s=np.concatenate([np.full(n_users, -int(cfg.warmup_days * 86_400)), world.changes_time_s]),
            user=np.concatenate([np.arange(n_users), world.changes_user]).astype(np.int32),
            theta=np.concatenate([world.theta0, world.changes_theta]).astype(np.float32),
        )
        with open(self.dir / "articles.tsv", "w", encoding="utf-8") as f:
            f.write("news_id\tsubcategory\tquality\tpublish_s\texpire_s\tbreaking_event\n")
            for a, s, q, p, e, b in zip(world.articles, world.sub_idx, world.quality, world.publish_s,
                                        world.expire_s, world.breaking_event):
                f.write(f"{a.news_id}\t{s}\t{q:.6f}\t{p}\t{e}\t{b}\n")
        news_ids = np.array(world.news_ids)
        meta = {
            "config": cfg.to_json(),
            "subcategories": [list(s) for s in world.subcategories],
            "click_model": cfg.click_model.to_json(),
            "breaking_events": [
                {"event": e, "time_s": int(t), "subcategory": list(world.subcategories[s]),
                 "news_ids": news_ids[world.breaking_event == e].tolist()}
                for e, (t, s) in enumerate(zip(world.breaking_times_s, world.breaking_subs))
            ],
            "interest_shift": {"time_s": world.shift_time_s, "user_ids": [f"U{u + 1}" for u in world.shifted_users]},
            "n_interest_changes": int(world.changes_time_s.size),
        }
        (self.dir / "world.json").write_text(json.dumps(meta, indent=1))


@dataclass
class GroundTruth:
    """A world's truth loaded from disk. Times are seconds from the world's start."""

    dir: Path
    meta: dict
    start: datetime
    params: ClickModelParams
    article_index: dict[str, int]
    sub_idx: np.ndarray
    quality: np.ndarray
    publish_s: np.ndarray
    expire_s: np.ndarray
    breaking_event: np.ndarray
    user_index: dict[str, int]
    change_time_s: np.ndarray
    change_user: np.ndarray
    change_theta: np.ndarray

    @classmethod
    def load(cls, world_dir: Path) -> GroundTruth:
        d = Path(world_dir) / TRUTH_DIR
        if not (d / "world.json").exists():
            raise FileNotFoundError(f"{d}: no ground truth here (only synthetic worlds have one)")
        meta = json.loads((d / "world.json").read_text())
        arts = np.genfromtxt(d / "articles.tsv", delimiter="\t", names=True, dtype=None, encoding="utf-8")
        inter = np.load(d / "interests.npz")
        order = np.lexsort((inter["time_s"], inter["user"]))  # per user, by time
        return cls(dir=d, meta=meta, start=datetime.fromisoformat(meta["config"]["start"]),
                   params=ClickModelParams(**meta["click_model"]),
                   article_index={n: i for i, n in enumerate(arts["news_id"].tolist())},
                   sub_idx=arts["subcategory"].astype(np.int64), quality=arts["quality"].astype(np.float64),
                   publish_s=arts["publish_s"].astype(np.int64), expire_s=arts["expire_s"].astype(np.int64),
                   breaking_event=arts["breaking_event"].astype(np.int64),
                   user_index={u: i for i, u in enumerate(inter["user_id"].tolist())},
                   change_time_s=inter["time_s"][order], change_user=inter["user"][order],
                   change_theta=inter["theta"][order])

    @property
    def n_subcategories(self) -> int:
        return len(self.meta["subcategories"])

    def seconds(self, t: datetime) -> float:
        return (t - self.start).total_seconds()

    def interests(self, user_id: str, t_s: float) -> np.ndarray:
        """(S,) the user's true interests at world time `t_s` (the last change at or before it)."""
        u = self.user_index[user_id]
        lo, hi = np.searchsorted(self.change_user, [u, u + 1])
        k = lo + max(int(np.searchsorted(self.change_time_s[lo:hi], t_s, side="right")) - 1, 0)
        return self.change_theta[k]

    @property
    def category_of_subcategory(self) -> np.ndarray:
        """(S,) int: each subcategory's category code (categories in sorted order)."""
        return np.unique([c for c, _ in self.meta["subcategories"]], return_inverse=True)[1]

    def rows(self, news_ids) -> np.ndarray:
        """(n,) int64: the row of articles.tsv (the index of every per-article array here) of each news id."""
        return np.array([self.article_index[n] for n in news_ids], dtype=np.int64)

    def click_prob(self, user_id: str, news_ids: list[str], t_s: float,
                   positions: np.ndarray | None = None, interests_at_s: float | None = None) -> np.ndarray:
        """(n,) true probability that `user_id` clicks each of `news_ids` shown at `t_s` in that order.
        interests_at_s: take the reader's interests as they were then (the rest of the model stays at `t_s`)."""
        idx = self.rows(news_ids)
        pos = np.arange(idx.size) if positions is None else np.asarray(positions)
        theta = self.interests(user_id, t_s if interests_at_s is None else interests_at_s)
        return self.click_prob_given(theta[self.sub_idx[idx]], idx, t_s, pos)

    def click_prob_given(self, interest: np.ndarray, idx: np.ndarray, t_s: np.ndarray | float,
                         positions: np.ndarray) -> np.ndarray:
        """(n,) the true click model for articles `idx` (rows of articles.tsv) shown at `t_s` (one time, or one per
        article) in `positions`, to readers whose interest in each article's subcategory is `interest` (n,)."""
        return click_probability(interest, self.quality[idx], (t_s - self.publish_s[idx]) / 3600.0,
                                 self._boost(idx, t_s), np.asarray(positions), self.n_subcategories, self.params)

    def relevance_without_interest(self, idx: np.ndarray, t_s: np.ndarray | float) -> np.ndarray:
        """(n,) the click model's relevance logit of articles `idx` at `t_s` for a reader whose interest term is 0
        (interest 1 / n_subcategories): the click model's log-odds before the slot, less the reader's interest."""
        return relevance(np.full(np.shape(idx), 1.0 / self.n_subcategories), self.quality[idx],
                         (t_s - self.publish_s[idx]) / 3600.0, self._boost(idx, t_s), self.n_subcategories,
                         self.params)

    def _boost(self, idx: np.ndarray, t_s: np.ndarray | float) -> np.ndarray:
        event = self.breaking_event[idx]
        times = np.array([e["time_s"] for e in self.meta["breaking_events"]] or [0], dtype=np.float64)
        return breaking_boost(np.where(event >= 0, (t_s - times[np.maximum(event, 0)]) / 3600.0, np.nan),
                              self.params)

    def impression_probs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(impression_id (I,), offsets (I+1,), probs (sum of shown,)): truth aligned with behaviors rows."""
        z = np.load(self.dir / "click_probs.npz")
        return z["impression_id"], z["offsets"], z["probs"]
