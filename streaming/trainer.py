"""The online trainer (stream path: impressions + clicks -> new model version -> `model-updates`). Fine-tunes the
current version's ranker on micro-batches of labelled impressions, gates the candidate against the current model
on the most recent held-out slice, and publishes + promotes a child version only if it does not regress.
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from feature_store.base import FeatureStore
from recsys.bundle import ITEM, USER, ModelBundle
from recsys.dataset import Articles
from recsys.registry import ModelRegistry
from recsys.item_table import ItemTable
from streaming.events import ArticleEvent, ClickEvent, ImpressionEvent, ItemVectorEvent, ModelUpdateEvent
from streaming.online_rows import ClickJoiner, LowWatermark, RowBuilder
from streaming.online_training import (OnlineTrainingConfig, RowWindow, fine_tune, gate, holdout_metrics,
                                       load_ranker, stage_child)

log = logging.getLogger("newsrec.streaming.trainer")


@dataclass
class TrainerStats:
    """What the worker exports as metrics and the bench reports. Times are wall seconds (clock())."""

    events: int = 0
    late_impressions: int = 0            # consumed after their click window had closed: not used
    rows_trained: int = 0
    steps: int = 0
    train_seconds: float = 0.0           # inside fine_tune only: rows_trained / train_seconds = step throughput
    evaluations: int = 0
    promotions: int = 0
    refused: int = 0
    enough_data_at: float | None = None  # first time the window and the held-out slice were both big enough
    first_promotion_at: float | None = None
    last_gate: str = ""
    versions: list[str] = field(default_factory=list)


@dataclass
class _Article:
    category: str
    subcategory: str
    text: str
    publish_s: float
    expire_s: float


def articles_table(articles: dict[str, _Article]) -> Articles:
    ids = list(articles)
    a = [articles[n] for n in ids]
    return Articles(news_ids=np.array(ids, dtype=object), index={n: i for i, n in enumerate(ids)},
                    category_name=np.array([x.category for x in a], dtype=object),
                    subcategory_name=np.array([x.subcategory for x in a], dtype=object), text=[x.text for x in a],
                    publish_s=np.array([x.publish_s for x in a]), expire_s=np.array([x.expire_s for x in a]))


class OnlineTrainer:
    """Feed it parsed events per micro-batch with `handle`; it returns the ModelUpdateEvents to publish.

    It trains from the registry's current version and follows it: if CURRENT moves under it (a rollback, an
    offline retrain), the candidate restarts from the new current, and a new item tower re-encodes the articles.
    """

    def __init__(self, registry: ModelRegistry, store: FeatureStore, cfg: OnlineTrainingConfig = OnlineTrainingConfig(),
                 catalogue: Articles | None = None, clock: Callable[[], float] = time.monotonic, threads: int = 1):
        torch.set_num_threads(threads)
        self.registry, self.store, self.cfg, self.clock = registry, store, cfg, clock
        self.stats = TrainerStats()
        self.rng = np.random.default_rng(cfg.seed)
        self.joiner = ClickJoiner(cfg.join_window_s)
        self.watermark = LowWatermark(cfg.partition_idle_s)
        self._articles: dict[str, _Article] = {}
        if catalogue is not None:
            for i, n in enumerate(catalogue.news_ids):
                self._articles[str(n)] = _Article(str(catalogue.category_name[i]), str(catalogue.subcategory_name[i]),
                                                  catalogue.text[i], float(catalogue.publish_s[i]),
                                                  float(catalogue.expire_s[i]))
        self.version: str | None = None
        self._towers: tuple[str, str] | None = None
        self._last_eval = self._last_promote = -float("inf")
        self._load_current()

    # -- the version it trains from -------------------------------------------------------------------------------
    def _load_current(self) -> None:
        loaded = self.registry.load()  # sha256-verified; raises if nothing is promoted
        towers = (loaded.files[ITEM]["sha256"], loaded.files[USER]["sha256"])
        if towers != self._towers:  # first load, or an offline retrain: (re-)encode every article we know
            self.bundle = ModelBundle.load(loaded.path)
            self.items = ItemTable(self.bundle.spec.embedding_dim)
            self._encode(list(self._articles))
            self.rows = RowBuilder(self.bundle, self.items, self.store)
            self.window = RowWindow(self.cfg, len(self.bundle.spec.ranker_features))  # rows of old towers: stale
            self._towers = towers
        self.version, self.version_dir = loaded.version, loaded.path
        self.current = load_ranker(loaded.path)
        self.candidate = copy.deepcopy(self.current)
        self.opt = torch.optim.Adam(self.candidate.parameters(), lr=self.cfg.lr)
        self._steps_since_base = 0
        log.info("training from version %s", self.version)

    def _encode(self, news_ids: list[str]) -> None:
        if not news_ids:
            return
        table = articles_table({n: self._articles[n] for n in news_ids})
        vecs = self.bundle.item_vectors(table.model_inputs(self.bundle.spec))
        self.items.upsert(table.news_ids, vecs, table.subcategory_name, table.category_name, table.publish_s)

    def add_articles(self, events: Sequence[ArticleEvent]) -> None:
        for e in events:
            self._articles[e.news_id] = _Article(e.category, e.subcategory, f"{e.title} {e.abstract}", e.time_s,
                                                 e.expire_s)
        self._encode(list(dict.fromkeys(e.news_id for e in events)))

    # -- one micro-batch --------------------------------------------------------------------------------------------
    async def handle(self, events: Sequence[object],
                     sources: Sequence[Hashable] | None = None) -> list[ModelUpdateEvent]:
        """Articles -> item table; impressions -> features read now -> pending; clicks -> labels; then train and
        maybe promote (in a thread: the worker's event loop keeps answering /readyz meanwhile). Other event types
        are ignored. `sources`: each event's partition (e.g. (topic, partition)); None = one ordered stream."""
        self.stats.events += len(events)
        self.add_articles([e.article if isinstance(e, ItemVectorEvent) else e for e in events
                           if isinstance(e, ArticleEvent | ItemVectorEvent)])
        # An impression whose click window had already closed when it was consumed -- on its partition's
        # low watermark, not on another partition's newer events -- would get features read long after it was
        # shown and an unknown share of its clicks: it is counted, logged and skipped.
        cutoff = self.joiner.watermark_s - self.cfg.join_window_s
        imps = [e for e in events if isinstance(e, ImpressionEvent)]
        if late := sum(e.time_s < cutoff for e in imps):
            self.stats.late_impressions += late
            log.warning("%d of %d impressions consumed after their click window closed (watermark %.0f): skipped",
                        late, len(imps), self.joiner.watermark_s)
        for p in await self.rows.build([e for e in imps if e.time_s >= cutoff]):
            self.joiner.add_impression(p)
        for c in (e for e in events if isinstance(e, ClickEvent)):
            self.joiner.add_click(c.impression_id, c.news_id, c.time_s)
        joined = [(src, e.time_s) for src, e in zip(sources or [None] * len(events), events, strict=True)
                  if isinstance(e, ImpressionEvent | ClickEvent)]
        self.watermark.observe(joined, self.clock())
        update = await asyncio.to_thread(self.train_and_gate)
        return [update] if update is not None else []

    def train_and_gate(self) -> ModelUpdateEvent | None:
        self.window.add(self.joiner.advance(self.watermark.value))
        if self.window.size >= self.cfg.min_train_rows and self.window.new_rows >= self.cfg.min_new_rows:
            started = time.perf_counter()
            steps = len(fine_tune(self.candidate, self.opt, self.window, self.rng))
            self.stats.train_seconds += time.perf_counter() - started
            self.stats.steps += steps
            self._steps_since_base += steps
            self.stats.rows_trained = self.window.trained_rows
        return self.maybe_promote()

    def _ready(self) -> bool:
        ready = (self.stats.steps > 0 and len(self.window.holdout) >= self.cfg.min_holdout_impressions)
        if ready and self.stats.enough_data_at is None:
            self.stats.enough_data_at = self.clock()
        return ready

    def maybe_promote(self) -> ModelUpdateEvent | None:
        """Gate, publish and promote at most once per min_promote_interval_s; the event to announce it, or None."""
        now = self.clock()
        if not self._ready() or now - self._last_eval < self.cfg.eval_every_s \
                or now - self._last_promote < self.cfg.min_promote_interval_s:
            return None
        self._last_eval = now
        if self.registry.current() != self.version:
            self._load_current()  # CURRENT moved (rollback / retrain): restart from it, judge next round
            return None
        if self._steps_since_base == 0:
            return None  # the candidate still is the current model: nothing to judge, nothing to publish
        x, y, group = self.window.holdout_arrays()
        cand, cur = holdout_metrics(self.candidate, x, y, group), holdout_metrics(self.current, x, y, group)
        ok, reason = gate(cand, cur, self.cfg)
        self.stats.evaluations += 1
        self.stats.last_gate = reason
        log.info("gate for a child of %s: %s", self.version, reason)
        if not ok:
            self.stats.refused += 1
            return None
        return self._publish(cand, cur, x)

    def _publish(self, cand: dict, cur: dict, holdout_x: np.ndarray) -> ModelUpdateEvent:
        parent, model = self.version, copy.deepcopy(self.candidate)
        with tempfile.TemporaryDirectory(prefix="newsrec-online-") as tmp:
            parity = stage_child(self.version_dir, model, Path(tmp), holdout_x[:4096])
            parent_mv = self.registry.get(parent)
            metrics = {"summary": {"auc": cand["auc"], "logloss": cand["logloss"]},
                       "online": {"candidate": cand, "parent": cur, "gate": self.stats.last_gate,
                                  "rows_trained": self.window.trained_rows, "steps": self.stats.steps,
                                  "onnx_parity_max_abs_error": parity,
                                  "join": dataclasses.asdict(self.joiner.stats),
                                  "skipped_leaked": self.window.skipped_leaked}}
            mv = self.registry.publish(tmp, training_config={"online": self.cfg.model_dump(),
                                                             "parent_training_config": parent_mv.training_config},
                                       feature_spec=parent_mv.feature_spec,
                                       data_range={"stream_until_s": self.joiner.watermark_s}, metrics=metrics,
                                       parent=parent, kind="newsrec-models", name="online fine-tuned ranker")
        self.registry.promote(mv.version)
        self.version, self.version_dir = mv.version, mv.path
        self.current = model.eval()
        self._steps_since_base = 0
        self._last_promote = self.clock()
        self.stats.promotions += 1
        self.stats.versions.append(mv.version)
        if self.stats.first_promotion_at is None:
            self.stats.first_promotion_at = self._last_promote
        log.info("promoted %s (parent %s)", mv.version, parent)
        return ModelUpdateEvent(event_id=f"model-update-{mv.version}", time_s=time.time(), version=mv.version,
                                parent=parent, metrics={f"candidate_{k}": v for k, v in cand.items()}
                                | {f"parent_{k}": v for k, v in cur.items()})
