"""A MIND directory (synthetic world or real MIND) loaded into arrays the trainers and the evaluator share.

Times become seconds from the log's first day. Articles get integer rows; histories become padded index
matrices (most recent click first). Real MIND lacks publish times: the first time an article is shown stands in.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data import mind
from data.schema import BEHAVIORS_FILE, NEWS_FILE, NEWS_META_FILE
from recsys.features import FeatureSpec
from recsys.text import hash_tokens

REAL_MIND_LIFETIME_H = 48.0


@dataclass
class Articles:
    """All articles known to the log; row i of every array is article i."""

    news_ids: np.ndarray        # (A,) str
    index: dict[str, int]
    category_name: np.ndarray   # (A,) str
    subcategory_name: np.ndarray
    text: list[str]             # title + abstract
    publish_s: np.ndarray       # (A,) float seconds
    expire_s: np.ndarray

    def model_inputs(self, spec: FeatureSpec, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Item-tower inputs for `rows` (default all): category, subcategory [n] int64, tokens [n, L] int64."""
        rows = np.arange(len(self.news_ids)) if rows is None else rows
        cat = {c: i for i, c in enumerate(spec.categories)}
        sub = {s: i for i, s in enumerate(spec.subcategories)}
        return {
            "category": np.array([cat.get(c, 0) for c in self.category_name[rows]], dtype=np.int64),
            "subcategory": np.array([sub.get(s, 0) for s in self.subcategory_name[rows]], dtype=np.int64),
            "tokens": hash_tokens([self.text[i] for i in rows], spec.token_buckets, spec.max_tokens),
        }


@dataclass
class Split:
    """One split's impressions. Shown rows are grouped by impression, in file order."""

    imp_id: np.ndarray        # (I,) int64
    imp_user: np.ndarray      # (I,) str
    imp_t: np.ndarray         # (I,) float seconds
    history: np.ndarray       # (I, H) int64 article rows, most recent first, -1 = padding
    history_len: np.ndarray   # (I,) int: full history length (before truncation to H)
    row_imp: np.ndarray       # (R,) int: impression index of each shown row
    row_item: np.ndarray      # (R,) int: article row
    row_pos: np.ndarray       # (R,) int: 0-based slot
    row_label: np.ndarray     # (R,) int8: 1 clicked, 0 not, -1 unlabelled

    @property
    def row_t(self) -> np.ndarray:
        return self.imp_t[self.row_imp]


@dataclass
class Dataset:
    articles: Articles
    train: Split
    dev: Split
    origin: pd.Timestamp
    world_dir: Path

    def data_range(self) -> dict:
        to_iso = lambda s: (self.origin + pd.Timedelta(seconds=float(s))).isoformat()  # noqa: E731
        return {"world": str(self.world_dir), "train_from": to_iso(self.train.imp_t.min()),
                "train_to": to_iso(self.train.imp_t.max()), "dev_from": to_iso(self.dev.imp_t.min()),
                "dev_to": to_iso(self.dev.imp_t.max())}


def _split_dirs(world_dir: Path) -> tuple[Path, Path]:
    for train, dev in (("train", "dev"), ("MINDsmall_train", "MINDsmall_dev"), ("MINDlarge_train", "MINDlarge_dev")):
        if (world_dir / train / BEHAVIORS_FILE).exists() and (world_dir / dev / BEHAVIORS_FILE).exists():
            return world_dir / train, world_dir / dev
    raise FileNotFoundError(f"{world_dir}: expected train/ and dev/ (or MINDsmall_train/ and MINDsmall_dev/) "
                            f"each with {NEWS_FILE} and {BEHAVIORS_FILE}")


def _split(behaviors: pd.DataFrame, articles: Articles, origin: pd.Timestamp, history_len: int) -> Split:
    shown = mind.explode_impressions(behaviors)
    counts = mind.impression_lengths(behaviors)
    hist = np.full((len(behaviors), history_len), -1, dtype=np.int64)
    full_len = np.zeros(len(behaviors), dtype=np.int64)
    index = articles.index
    for i, text in enumerate(behaviors["history"].tolist()):
        ids = [index[n] for n in text.split() if n in index]
        full_len[i] = len(ids)
        recent = ids[::-1][:history_len]
        hist[i, :len(recent)] = recent
    return Split(imp_id=behaviors["impression_id"].to_numpy(), imp_user=behaviors["user_id"].to_numpy(),
                 imp_t=((behaviors["time"] - origin) / pd.Timedelta(seconds=1)).to_numpy(np.float64),
                 history=hist, history_len=full_len,
                 row_imp=np.repeat(np.arange(len(behaviors)), counts),
                 row_item=shown["news_id"].map(index).to_numpy(np.int64),
                 row_pos=shown["position"].to_numpy(np.int64), row_label=shown["clicked"].to_numpy())


def load_dataset(world_dir: Path, history_len: int = 50) -> Dataset:
    """Read train and dev splits, all their news, and publish times (news_meta.tsv, else first shown)."""
    world_dir = Path(world_dir)
    train_dir, dev_dir = _split_dirs(world_dir)
    news = pd.concat([mind.read_news_table(d / NEWS_FILE) for d in (train_dir, dev_dir)]).drop_duplicates("news_id")
    b_train = mind.read_behaviors_table(train_dir / BEHAVIORS_FILE)
    b_dev = mind.read_behaviors_table(dev_dir / BEHAVIORS_FILE)
    origin = min(b_train["time"].min(), b_dev["time"].min()).normalize()
    meta_path = next((p for p in (world_dir / NEWS_META_FILE, train_dir / NEWS_META_FILE) if p.exists()), None)
    if meta_path is not None:
        meta = mind.read_news_meta_table(meta_path).set_index("news_id")
        publish = ((news["news_id"].map(meta["publish_time"]) - origin) / pd.Timedelta(seconds=1)).to_numpy()
        expire = ((news["news_id"].map(meta["expire_time"]) - origin) / pd.Timedelta(seconds=1)).to_numpy()
    else:
        shown = pd.concat([mind.explode_impressions(b) for b in (b_train, b_dev)])
        first = shown.groupby("news_id")["time"].min()
        publish = ((news["news_id"].map(first) - origin) / pd.Timedelta(seconds=1)).to_numpy()
        publish = np.where(np.isnan(publish), -REAL_MIND_LIFETIME_H * 3600, publish)  # only in histories: old
        expire = publish + REAL_MIND_LIFETIME_H * 3600
    articles = Articles(news_ids=news["news_id"].to_numpy(), index={n: i for i, n in enumerate(news["news_id"])},
                        category_name=news["category"].to_numpy(), subcategory_name=news["subcategory"].to_numpy(),
                        text=(news["title"] + " " + news["abstract"]).tolist(),
                        publish_s=publish.astype(np.float64), expire_s=expire.astype(np.float64))
    return Dataset(articles=articles, train=_split(b_train, articles, origin, history_len),
                   dev=_split(b_dev, articles, origin, history_len), origin=origin, world_dir=world_dir)
