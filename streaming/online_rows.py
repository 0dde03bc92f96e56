"""Online training rows (stream path: impressions + clicks -> trainer). Each consumed impression's features are
read from the online store at its own event time and built by serving's feature function (no skew); the rows
then wait for their clicks (joined by impression_id within a window of event time) and leave labelled.
"""
from __future__ import annotations

import asyncio
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from feature_store.base import FeatureStore
from recsys.bundle import ModelBundle
from recsys.item_table import ItemTable
from recsys.online_features import Candidates, online_ranker_features
from streaming.events import ImpressionEvent

READ_CONCURRENCY = 32  # store reads in flight per batch: enough to hide round trips, bounded for the connection pool


@dataclass(frozen=True)
class PendingImpression:
    """An impression whose features are built and whose clicks may still arrive; arrays are row-aligned."""

    impression_id: str
    user_id: str
    t_s: float                     # event time, Unix seconds
    news_ids: tuple[str, ...]      # the shown items the trainer knows (vector + labels), in slot order
    features: np.ndarray           # (n, F) float32, positions = logged slots
    history: frozenset[str]        # the reader's stored history when the features were read


@dataclass(frozen=True)
class LabelledImpression:
    impression_id: str
    user_id: str
    t_s: float
    features: np.ndarray           # (n, F) float32
    labels: np.ndarray             # (n,) float32 in {0, 1}
    # a clicked item already in the history read for the features: the click was applied to the store before
    # the read, so its counters leak the label into the features; such impressions are not trained on
    leaked: bool


@dataclass
class JoinStats:
    impressions: int = 0
    clicks_joined: int = 0
    clicks_unmatched: int = 0      # no impression id, or it never arrived within the window
    labelled: int = 0
    leaked: int = 0
    dropped_full: int = 0          # pending impressions dropped because max_pending was reached


@dataclass
class LowWatermark:
    """Event-time progress of a stream read from several partitions: the oldest of the partitions' latest event
    times. Kafka orders events within a partition only, so a consumer behind on a backlog may drain one partition
    hours ahead of the others; a watermark taken from the latest event of any partition would then declare every
    other partition's unread events late. Never decreases. A partition that delivered nothing for `idle_s` (quiet,
    revoked at a rebalance, or never assigned) stops holding it back, so one idle partition cannot stall the join.
    """

    idle_s: float
    value: float = 0.0
    _marks: dict[Hashable, tuple[float, float]] = field(default_factory=dict)  # source -> (latest event t, heard at)

    def expect(self, sources: Iterable[Hashable], now_s: float) -> None:
        """Partitions that will deliver: until one is heard from (or idle_s passes) the watermark waits for it."""
        for source in sources:
            self._marks.setdefault(source, (-math.inf, now_s))

    def observe(self, marks: Iterable[tuple[Hashable, float]], now_s: float) -> float:
        """(source, event time) of each consumed event; returns the updated watermark."""
        for source, t_s in marks:
            latest = self._marks.get(source, (-math.inf, now_s))[0]
            self._marks[source] = (max(latest, t_s), now_s)
        live = [t for t, heard in self._marks.values() if now_s - heard < self.idle_s]
        if live:
            self.value = max(self.value, min(live))
        return self.value


@dataclass
class ClickJoiner:
    """Holds impressions until `window_s` of event time has passed, labelling them with the clicks that arrive.

    Clicks may be consumed before their impression (two topics): they wait, keyed by impression id, as long.
    The caller moves the event-time watermark (advance; a LowWatermark over the partitions it reads); an
    impression is final once watermark > t_s + window_s.
    """

    window_s: float
    max_pending: int = 200_000
    stats: JoinStats = field(default_factory=JoinStats)
    _pending: dict[str, tuple[PendingImpression, set[str]]] = field(default_factory=dict)
    _orphans: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    watermark_s: float = 0.0

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add_impression(self, p: PendingImpression) -> None:
        if p.impression_id in self._pending:
            return  # a redelivered impression: the first one's rows stand
        if len(self._pending) >= self.max_pending:  # dicts keep insertion order: drop the oldest
            self._pending.pop(next(iter(self._pending)))
            self.stats.dropped_full += 1
        clicked = {news_id for news_id, _ in self._orphans.pop(p.impression_id, [])}
        self.stats.clicks_joined += len(clicked)
        self._pending[p.impression_id] = (p, clicked)
        self.stats.impressions += 1

    def add_click(self, impression_id: str | None, news_id: str, t_s: float) -> None:
        if impression_id is None:
            self.stats.clicks_unmatched += 1
        elif impression_id in self._pending:
            self._pending[impression_id][1].add(news_id)
            self.stats.clicks_joined += 1
        else:
            self._orphans.setdefault(impression_id, []).append((news_id, t_s))

    def advance(self, watermark_s: float | None = None) -> list[LabelledImpression]:
        """Labelled impressions whose window closed (oldest first); expires orphan clicks past the window."""
        if watermark_s is not None:
            self.watermark_s = max(self.watermark_s, watermark_s)
        cutoff = self.watermark_s - self.window_s
        done = [imp_id for imp_id, (p, _) in self._pending.items() if p.t_s < cutoff]
        out = []
        for imp_id in done:
            p, clicked = self._pending.pop(imp_id)
            labels = np.array([n in clicked for n in p.news_ids], dtype=np.float32)
            leaked = bool(clicked & p.history)
            out.append(LabelledImpression(p.impression_id, p.user_id, p.t_s, p.features, labels, leaked))
            self.stats.labelled += 1
            self.stats.leaked += leaked
        for imp_id in [i for i, clicks in self._orphans.items() if max(t for _, t in clicks) < cutoff]:
            self.stats.clicks_unmatched += len(self._orphans.pop(imp_id))
        return sorted(out, key=lambda li: li.t_s)


class RowBuilder:
    """Features for consumed impressions, read from the store as of each impression's time (Monolith-style
    "features at serving time"): the reader's features, the shown items' counters, the user tower's vector over
    the reader's history, then serving's online_ranker_features with the logged slots as positions."""

    def __init__(self, bundle: ModelBundle, items: ItemTable, store: FeatureStore):
        self.bundle, self.items, self.store = bundle, items, store
        self.unknown_items = 0  # shown items the item table does not know yet (no vector): left out of the rows
        self.cold_readers = 0   # impressions of readers without history: serving never ranks for them

    async def _reads(self, imps: Sequence[ImpressionEvent], known: list[list[str]]):
        sem = asyncio.Semaphore(READ_CONCURRENCY)

        async def read(imp: ImpressionEvent, ids: list[str]):
            async with sem:
                return await asyncio.gather(self.store.get_user(imp.user_id, imp.time_s),
                                            self.store.get_item_counters(tuple(ids), imp.time_s))

        return await asyncio.gather(*(read(imp, ids) for imp, ids in zip(imps, known)))

    async def build(self, imps: Sequence[ImpressionEvent]) -> list[PendingImpression]:
        """One PendingImpression per impression of a reader with history and at least one known item, in order."""
        table, spec = self.items.snapshot, self.bundle.spec
        known, slots = [], []
        for imp in imps:
            rows = table.rows(imp.news_ids)
            self.unknown_items += int((rows < 0).sum())
            known.append([n for n, r in zip(imp.news_ids, rows) if r >= 0])
            slots.append(np.nonzero(rows >= 0)[0])
        keep = [i for i, ids in enumerate(known) if ids]
        if not keep:
            return []
        imps, known, slots = [imps[i] for i in keep], [known[i] for i in keep], [slots[i] for i in keep]
        reads = await self._reads(imps, known)
        history = np.full((len(imps), spec.history_len), -1, dtype=np.int64)
        hist_rows = []
        for i, (user, _) in enumerate(reads):
            rows = table.rows(user.history)  # a reader with no history gets trending at serving: skipped below
            hist_rows.append(rows)
            valid = rows[rows >= 0][:spec.history_len]
            history[i, :valid.size] = valid
        user_vecs = self.bundle.user_vectors(history, table.vectors)  # one batched user-tower call
        out = []
        for imp, ids, pos, (user, counters), rows, vec in zip(imps, known, slots, reads, hist_rows, user_vecs):
            if not user.history:
                self.cold_readers += 1
                continue
            item_rows = table.rows(ids)
            cand = Candidates(tuple(ids), table.vectors[item_rows], table.labels(item_rows, "subcategory"),
                              table.labels(item_rows, "category"), table.publish_s[item_rows])
            x = online_ranker_features(spec, user, vec, cand, counters, table.labels(rows, "subcategory"),
                                       table.labels(rows, "category"), imp.time_s, positions=pos)
            out.append(PendingImpression(imp.impression_id or imp.event_id, imp.user_id, imp.time_s, tuple(ids),
                                         x, frozenset(user.history)))
        return out
