"""The simulator (`newsrec simulate`): a world's event mode (data.events) replayed into Kafka as ArticleEvent,
ImpressionEvent and ClickEvent, paced by a speed-up of the world's clock and capped at a rate; optionally a
breaking-news burst of new articles. The world's own breaking events and readers' interest drift replay with it.

Every event is stamped with the time it is sent (plus an optional clock offset, to match a serving clock that
runs at a world's end): the replay is "now". A speed-up compresses article lifetimes by the same factor.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.events import ArticlePublished, Clicked, ImpressionShown, WorldEvent, iter_world_events
from data.synth_text import make_article
from data.vocab import subcategory_list
from streaming.events import ArticleEvent, ClickEvent, ImpressionEvent, _Event as Event
from streaming.producer import EventPublisher
from streaming.settings import StreamSettings

MAX_BATCH = 500


@dataclass(frozen=True)
class Burst:
    """`articles` new breaking stories in one subcategory, sent together `at_s` seconds into the run."""
    articles: int
    at_s: float
    subcategory: str | None = None   # default: a random one
    lifetime_h: float = 12.0
    seed: int = 0


@dataclass(frozen=True)
class SimConfig:
    world: Path
    rate: float = 200.0           # events per second at most; 0 = no cap
    speedup: float = 60.0         # world seconds per wall second; 0 = as fast as the rate allows
    duration_s: float = 60.0
    clock_offset_s: float = 0.0   # added to every event time (serving's clock_offset_s)
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))  # a rerun is new events, not duplicates
    burst: Burst | None = None


def to_stream(e: WorldEvent, now_s: float, run_id: str, lifetime_scale: float) -> tuple[str, str, Event]:
    """(topic attribute of Topics, key, event) for one world event sent at now_s."""
    eid = f"{run_id}:{e.event_id}"
    if isinstance(e, ArticlePublished):
        a, life = e.article, (e.expire_time - e.time).total_seconds() * lifetime_scale
        return "articles", a.news_id, ArticleEvent(event_id=eid, time_s=now_s, news_id=a.news_id, title=a.title,
                                                   abstract=a.abstract, category=a.category,
                                                   subcategory=a.subcategory, expire_s=now_s + life)
    if isinstance(e, ImpressionShown):
        return "impressions", e.user_id, ImpressionEvent(event_id=eid, time_s=now_s, user_id=e.user_id,
                                                         news_ids=list(e.news_ids), impression_id=e.impression_id)
    if isinstance(e, Clicked):
        return "clicks", e.user_id, ClickEvent(event_id=eid, time_s=now_s, user_id=e.user_id, news_id=e.news_id,
                                               impression_id=e.impression_id, position=e.position)
    raise TypeError(f"not a world event: {type(e).__name__}")


def breaking_articles(burst: Burst, now_s: float, run_id: str) -> list[ArticleEvent]:
    """Fresh articles on one topic, with ids no world uses (N8xxxxxxxxx), each headlined "Breaking: ..."."""
    rng = np.random.default_rng(burst.seed)
    pairs = subcategory_list()
    cat, sub = next(((c, s) for c, s in pairs if s == burst.subcategory), pairs[int(rng.integers(len(pairs)))])
    if burst.subcategory is not None and sub != burst.subcategory:
        raise ValueError(f"unknown subcategory {burst.subcategory!r}")
    base = 80_000_000_000 + int(rng.integers(1_000_000_000))
    out = []
    for i in range(burst.articles):
        a = make_article(rng, f"N{base + i}", cat, sub, breaking=True)
        out.append(ArticleEvent(event_id=f"{run_id}:breaking-{a.news_id}", time_s=now_s, news_id=a.news_id,
                                title=a.title, abstract=a.abstract, category=cat, subcategory=sub,
                                expire_s=now_s + burst.lifetime_h * 3600))
    return out


def schedule(events: Iterator[WorldEvent], speedup: float, rate: float) -> Iterator[tuple[float, WorldEvent]]:
    """(seconds after the start it is due, event): world time / speedup, and never faster than `rate`."""
    t0, last = None, -np.inf
    gap = 1.0 / rate if rate > 0 else 0.0
    for e in events:
        t0 = e.time if t0 is None else t0
        due = (e.time - t0).total_seconds() / speedup if speedup > 0 else 0.0
        last = max(due, last + gap)
        yield last, e


async def simulate(cfg: SimConfig, stream: StreamSettings, publisher: EventPublisher) -> dict:
    """Replay until the world ends or duration_s passes; returns counts, achieved rate and how late it ran."""
    topics = stream.topics
    lifetime_scale = 1.0 / cfg.speedup if cfg.speedup > 0 else 1.0
    sent: Counter[str] = Counter()
    behind_s = 0.0
    start = time.monotonic()
    burst = cfg.burst
    due_events = schedule(iter_world_events(cfg.world), cfg.speedup, cfg.rate)
    pending = next(due_events, None)
    while pending is not None or burst is not None:
        elapsed = time.monotonic() - start
        if elapsed >= cfg.duration_s:
            break
        now_s = time.time() + cfg.clock_offset_s
        batch: list[tuple[str, str, Event]] = []
        if burst is not None and elapsed >= burst.at_s:
            batch += [("articles", a.news_id, a) for a in breaking_articles(burst, now_s, cfg.run_id)]
            sent["breaking"] += burst.articles
            burst = None
        while pending is not None and pending[0] <= elapsed and len(batch) < MAX_BATCH:
            behind_s = max(behind_s, elapsed - pending[0])
            batch.append(to_stream(pending[1], now_s, cfg.run_id, lifetime_scale))
            pending = next(due_events, None)
        if batch:
            await publisher.publish_many([(topics.name(t), k, e) for t, k, e in batch])
            sent.update(t for t, _, _ in batch)
            continue
        wake = min(x for x in (pending[0] if pending else None, burst.at_s if burst else None, cfg.duration_s)
                   if x is not None)
        await asyncio.sleep(max(0.0, wake - (time.monotonic() - start)))
    wall = time.monotonic() - start
    total = sum(v for k, v in sent.items() if k != "breaking")
    return {"sent": dict(sent), "events": total, "wall_s": round(wall, 3),
            "achieved_eps": round(total / wall, 1) if wall > 0 else 0.0, "max_behind_s": round(behind_s, 3),
            "world_done": pending is None, "run_id": cfg.run_id}
