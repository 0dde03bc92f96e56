"""Event mode: a world directory replayed as one time-ordered stream of article-published, impression and click
events, the shape the Kafka path consumes. Works on any MIND directory with news_meta.tsv (the synthetic world's).
"""
from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count
from pathlib import Path

from data import mind
from data.schema import BEHAVIORS_FILE, NEWS_FILE, NEWS_META_FILE, NewsArticle

CLICK_DELAY_S = 2.0       # a click lands this long after its impression ...
CLICK_PER_POSITION_S = 3.0  # ... plus this per slot scrolled past


@dataclass(frozen=True)
class ArticlePublished:
    time: datetime
    article: NewsArticle
    expire_time: datetime
    kind = "article"

    @property
    def event_id(self) -> str:
        return f"article-{self.article.news_id}"


@dataclass(frozen=True)
class ImpressionShown:
    time: datetime
    impression_id: str
    user_id: str
    news_ids: tuple[str, ...]
    kind = "impression"

    @property
    def event_id(self) -> str:
        return f"impression-{self.impression_id}"


@dataclass(frozen=True)
class Clicked:
    time: datetime
    impression_id: str
    user_id: str
    news_id: str
    position: int
    kind = "click"

    @property
    def event_id(self) -> str:
        return f"click-{self.impression_id}-{self.position}"


WorldEvent = ArticlePublished | ImpressionShown | Clicked


def _articles(world_dir: Path) -> Iterator[ArticlePublished]:
    meta = {m.news_id: m for m in mind.iter_news_meta(world_dir / NEWS_META_FILE)}
    events = [ArticlePublished(meta[a.news_id].publish_time, a, meta[a.news_id].expire_time)
              for a in mind.iter_news(world_dir / "dev" / NEWS_FILE) if a.news_id in meta]
    return iter(sorted(events, key=lambda e: e.time))


def _behaviors(world_dir: Path) -> Iterator[ImpressionShown | Clicked]:
    """Impressions in file order, each click held back until its own time comes."""
    pending: list[tuple[datetime, int, Clicked]] = []
    tie = count()
    for split in ("train", "dev"):
        for b in mind.iter_behaviors(world_dir / split / BEHAVIORS_FILE):
            while pending and pending[0][0] <= b.time:
                yield heapq.heappop(pending)[2]
            yield ImpressionShown(b.time, b.impression_id, b.user_id, tuple(i.news_id for i in b.impressions))
            for pos, item in enumerate(b.impressions):
                if item.clicked:
                    t = b.time + timedelta(seconds=CLICK_DELAY_S + CLICK_PER_POSITION_S * pos)
                    heapq.heappush(pending, (t, next(tie), Clicked(t, b.impression_id, b.user_id, item.news_id, pos)))
    while pending:
        yield heapq.heappop(pending)[2]


def iter_world_events(world_dir: Path) -> Iterator[WorldEvent]:
    """All events of a world in time order (articles first on equal times, so nothing is shown unpublished)."""
    world_dir = Path(world_dir)
    articles = ((e.time, 0, e) for e in _articles(world_dir))
    behaviors = ((e.time, 1, e) for e in _behaviors(world_dir))
    for _, _, event in heapq.merge(articles, behaviors, key=lambda x: (x[0], x[1])):
        yield event


def event_to_json(event: WorldEvent) -> dict:
    """A flat JSON-ready dict of an event (times in ISO 8601)."""
    base = {"event_id": event.event_id, "kind": event.kind, "time": event.time.isoformat()}
    if isinstance(event, ArticlePublished):
        a = event.article
        return base | {"news_id": a.news_id, "category": a.category, "subcategory": a.subcategory,
                       "title": a.title, "abstract": a.abstract, "expire_time": event.expire_time.isoformat()}
    if isinstance(event, ImpressionShown):
        return base | {"impression_id": event.impression_id, "user_id": event.user_id,
                       "news_ids": list(event.news_ids)}
    return base | {"impression_id": event.impression_id, "user_id": event.user_id, "news_id": event.news_id,
                   "position": event.position}
