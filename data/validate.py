"""Validate a MIND directory: strict reads of every split, cross-file news id checks, and per-split stats.

Backs the CLI's validate command; reads through data/mind.py's record iterators, never the fast tables.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from data.mind import iter_behaviors, iter_news, iter_news_meta
from data.schema import BEHAVIORS_FILE, NEWS_FILE, NEWS_META_FILE, MindFormatError


@dataclass(frozen=True)
class SplitStats:
    """One news.tsv + behaviors.tsv pair. Counts are rows or items; clicks and CTR cover labelled items only."""

    name: str
    path: str
    articles: int
    categories: int
    subcategories: int
    behaviors: int  # rows of behaviors.tsv, i.e. impressions
    users: int
    shown: int  # impression items over all rows
    labelled_behaviors: int
    labelled_shown: int
    clicks: int
    history_items: int
    empty_histories: int
    time_min: datetime | None
    time_max: datetime | None
    articles_with_meta: int  # articles of this split with a news_meta.tsv row (split or directory level)
    borrowed_references: int  # history/impression ids found only in another split's news.tsv

    @property
    def labelled(self) -> str:
        """'yes', 'no' or 'partly': whether behaviors.tsv carries click labels (test splits do not)."""
        if self.behaviors and self.labelled_behaviors == self.behaviors:
            return "yes"
        return "partly" if self.labelled_behaviors else "no"

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.labelled_shown if self.labelled_shown else None

    @property
    def mean_history(self) -> float | None:
        return self.history_items / self.behaviors if self.behaviors else None

    @property
    def empty_history_share(self) -> float | None:
        return self.empty_histories / self.behaviors if self.behaviors else None


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _when(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


_ROWS = (  # (label, SplitStats -> text), in display order
    ("articles", lambda s: str(s.articles)), ("categories", lambda s: str(s.categories)),
    ("subcategories", lambda s: str(s.subcategories)), ("behaviors", lambda s: str(s.behaviors)),
    ("users", lambda s: str(s.users)), ("shown items", lambda s: str(s.shown)), ("labelled", lambda s: s.labelled),
    ("clicks", lambda s: str(s.clicks)), ("CTR", lambda s: _percent(s.ctr)),
    ("mean history", lambda s: "-" if s.mean_history is None else f"{s.mean_history:.2f}"),
    ("empty history", lambda s: _percent(s.empty_history_share)),
    ("first time", lambda s: _when(s.time_min)), ("last time", lambda s: _when(s.time_max)),
    ("articles with meta", lambda s: str(s.articles_with_meta)),
    ("borrowed references", lambda s: str(s.borrowed_references)),
)


@dataclass(frozen=True)
class DirStats:
    """What validate_dir found: one SplitStats per news.tsv + behaviors.tsv pair, in directory order."""

    path: str
    splits: tuple[SplitStats, ...]

    def to_dict(self) -> dict:
        """JSON-ready: times as ISO strings, derived ratios included."""
        splits = []
        for s in self.splits:
            d = asdict(s)
            d.update(labelled=s.labelled, ctr=s.ctr, mean_history=s.mean_history,
                     empty_history_share=s.empty_history_share,
                     time_min=s.time_min and s.time_min.isoformat(), time_max=s.time_max and s.time_max.isoformat())
            splits.append(d)
        return {"path": self.path, "splits": splits}

    def to_lines(self) -> list[str]:
        """A plain-text table: one row per statistic, one column per split."""
        header = ["", *(s.name for s in self.splits)]
        rows = [header] + [[label, *(text(s) for s in self.splits)] for label, text in _ROWS]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"MIND directory {self.path}: {len(self.splits)} split(s), all files valid"]
        lines += ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                  .rstrip() for row in rows]
        return lines


def format_stats(stats: DirStats) -> str:
    return "\n".join(stats.to_lines())


def find_split_dirs(path: str | os.PathLike) -> list[Path]:
    """Directories holding a news.tsv + behaviors.tsv pair: `path` itself, then its immediate subdirectories by
    name. Raises FileNotFoundError when there is none, or when a directory holds only one file of the pair."""
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    found = []
    for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        has = [(d / NEWS_FILE).is_file(), (d / BEHAVIORS_FILE).is_file()]
        if all(has):
            found.append(d)
        elif any(has):
            missing = BEHAVIORS_FILE if has[0] else NEWS_FILE
            raise FileNotFoundError(f"{d} has {NEWS_FILE if has[0] else BEHAVIORS_FILE} but no {missing}")
    if not found:
        raise FileNotFoundError(f"{root}: no {NEWS_FILE} + {BEHAVIORS_FILE} pair in it or its immediate subdirectories")
    return found


def _meta_ids(path: Path, known: set[str]) -> set[str]:
    """news ids of a news_meta.tsv, each of which must be an article of some split."""
    ids = set()
    for line, meta in enumerate(iter_news_meta(path), 1):  # iter_news_meta skips no lines: line i is record i
        if meta.news_id not in known:
            raise MindFormatError(path, line, "news_id", f"{meta.news_id} is in no {NEWS_FILE} of the directory")
        ids.add(meta.news_id)
    return ids


def validate_dir(path: str | os.PathLike) -> DirStats:
    """Read every MIND file under `path` strictly and check that each news id a behavior names is an article.

    An id may come from the split's own news.tsv or, as in synthetic worlds sharing one catalogue, another split's
    (counted as borrowed). Raises MindFormatError at the first bad line, or at the first line naming an unknown id.
    """
    split_dirs = find_split_dirs(path)
    news = {d: {a.news_id: (a.category, a.subcategory) for a in iter_news(d / NEWS_FILE)} for d in split_dirs}
    known = set().union(*(ids.keys() for ids in news.values()))
    root_meta = _meta_ids(Path(path) / NEWS_META_FILE, known) if (Path(path) / NEWS_META_FILE).is_file() else set()
    splits = []
    for d in split_dirs:
        own_meta = _meta_ids(d / NEWS_META_FILE, known) if d != Path(path) and (d / NEWS_META_FILE).is_file() else set()
        splits.append(_split_stats(d, news[d], known, root_meta | own_meta))
    return DirStats(str(path), tuple(splits))


def _split_stats(d: Path, articles: dict[str, tuple[str, str]], known: set[str], meta: set[str]) -> SplitStats:
    path = d / BEHAVIORS_FILE
    users: set[str] = set()
    n = shown = labelled_rows = labelled_shown = clicks = history_items = empty = borrowed = 0
    unknown_refs, unknown_ids, first_unknown = 0, set(), None
    t_min = t_max = None
    for line, b in enumerate(iter_behaviors(path), 1):  # every line is a record, so the count is the line
        n += 1
        users.add(b.user_id)
        shown += len(b.impressions)
        if b.labelled:
            labelled_rows += 1
            labelled_shown += len(b.impressions)
            clicks += sum(item.clicked for item in b.impressions)
        history_items += len(b.history)
        empty += not b.history
        t_min = b.time if t_min is None else min(t_min, b.time)
        t_max = b.time if t_max is None else max(t_max, b.time)
        for column, ids in (("history", b.history), ("impressions", [i.news_id for i in b.impressions])):
            for news_id in ids:
                if news_id in articles:
                    continue
                if news_id in known:
                    borrowed += 1
                    continue
                unknown_refs += 1
                unknown_ids.add(news_id)
                first_unknown = first_unknown or (line, column, news_id)
    if first_unknown:
        line, column, news_id = first_unknown
        raise MindFormatError(path, line, column, f"{unknown_refs} references to {len(unknown_ids)} news ids in no "
                              f"{NEWS_FILE} of the directory (first: {news_id})")
    return SplitStats(
        name=d.name, path=str(d), articles=len(articles), categories=len({c for c, _ in articles.values()}),
        subcategories=len({s for _, s in articles.values()}), behaviors=n, users=len(users), shown=shown,
        labelled_behaviors=labelled_rows, labelled_shown=labelled_shown, clicks=clicks, history_items=history_items,
        empty_histories=empty, time_min=t_min, time_max=t_max, articles_with_meta=len(meta & articles.keys()),
        borrowed_references=borrowed,
    )
