"""`newsrec bench encoders`: the split and two-tower training of `newsrec train`, once per item-tower text encoder;
retrieval recall@K of dev clicks over the live pool (all, and on articles published after the training cut, i.e.
brand-new ones), next to the oracle, with encode cost, model size and training time."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from data.truth import GroundTruth
from recsys.dataset import Dataset, load_dataset
from recsys.encoder_variants import ENCODERS, ItemVariant, build_variant, encode_costs, tower_size
from recsys.ranking_data import LogCounters
from recsys.retrieval import (RetrievalConfig, item_vectors, retrieval_scores, train_two_tower, user_vectors)
from recsys.train import TrainConfig, build_spec, tune_popularity_weight


@dataclass(frozen=True)
class EncoderCompareConfig:
    encoders: tuple[str, ...] = ENCODERS          # the first is the baseline the others' deltas are taken against
    retrieval: RetrievalConfig = field(default_factory=lambda: TrainConfig().retrieval)  # as `newsrec train`
    recall_k: int = 200
    impressions: int = 1_000                      # sampled dev impressions with a click
    cost_articles: int = 50                       # articles timed one at a time
    cost_batch: int = 256                         # articles timed in one call
    threads: int = 2
    seed: int = 0


@dataclass
class ClickSample:
    """Sampled dev impressions with a click: the live pool at display time and the clicked articles of each."""

    imps: np.ndarray             # (I,) dev impression index
    pools: list[np.ndarray]      # article rows live at the impression's time
    pop_6h: list[np.ndarray]     # decayed 6 h clicks of each pool article then (the index's popularity bias)
    clicks: list[np.ndarray]
    cold: np.ndarray             # (C,) bool, one per click in order: article published after the training cut
    oracle_hits: np.ndarray | None  # (C,) bool: in the top K of the true click probabilities


def _hits(pool: np.ndarray, scores: np.ndarray, clicks: np.ndarray, k: int) -> np.ndarray:
    return np.isin(clicks, pool[np.argsort(-scores, kind="stable")[:k]])


def sample_clicks(ds: Dataset, truth: GroundTruth | None, counters: LogCounters, k: int, n: int, seed: int
                  ) -> ClickSample:
    a, dev = ds.articles, ds.dev
    clicked = np.nonzero(dev.row_label == 1)[0]
    with_click = np.unique(dev.row_imp[clicked])
    imps = np.sort(np.random.default_rng(seed).choice(with_click, min(n, with_click.size), replace=False))
    pools, pops, clicks, oracle = [], [], [], []
    for i in imps:
        t = dev.imp_t[i]
        pool = np.nonzero((a.publish_s <= t) & (a.expire_s > t))[0]
        pools.append(pool)
        pops.append(counters.clicks(pool, np.full(pool.size, t), 6.0))
        clicks.append(dev.row_item[clicked[dev.row_imp[clicked] == i]])
        if truth is not None:
            p = truth.click_prob(dev.imp_user[i], list(a.news_ids[pool]), t, np.zeros(pool.size))
            oracle.append(_hits(pool, p, clicks[-1], k))
    cold = a.publish_s[np.concatenate(clicks)] > ds.train.imp_t.max()
    return ClickSample(imps, pools, pops, clicks, cold, np.concatenate(oracle) if truth is not None else None)


def recall_hits(sample: ClickSample, item_vecs: np.ndarray, dev_user_vecs: np.ndarray, weight: float, k: int
                ) -> np.ndarray:
    """(C,) bool: each sampled click in the index's top K (user . item + weight * popularity bias, as served)."""
    return np.concatenate([_hits(pool, retrieval_scores(item_vecs[pool], pop, dev_user_vecs[i], weight), c, k)
                           for i, pool, pop, c in zip(sample.imps, sample.pools, sample.pop_6h, sample.clicks)])


def recall_summary(hits: np.ndarray, sample: ClickSample, prefix: str = "") -> dict[str, float | None]:
    """recall@K over all, cold and warm clicks, and each divided by the oracle's recall on the same clicks."""
    out: dict[str, float | None] = {}
    for part, sel in (("", np.ones_like(sample.cold)), ("cold_", sample.cold), ("warm_", ~sample.cold)):
        r = float(hits[sel].mean()) if sel.any() else None
        o = float(sample.oracle_hits[sel].mean()) if sample.oracle_hits is not None and sel.any() else None
        out[f"{prefix}{part}recall_at_k"] = r
        out[f"{prefix}{part}recall_vs_oracle"] = r / o if r is not None and o else None
    return out


def paired_delta(hits: np.ndarray, base: np.ndarray) -> dict[str, float | None]:
    """Mean difference in hit rate over the same clicks and its standard error (clicks as independent draws)."""
    d = hits.astype(np.float64) - base.astype(np.float64)
    return {"delta": float(d.mean()) if d.size else None,
            "se": float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else None}


def run_encoder(name: str, ds: Dataset, sample: ClickSample, counters: LogCounters, cfg: EncoderCompareConfig
                ) -> tuple[dict, dict[str, np.ndarray], tuple[ItemVariant, torch.nn.Module]]:
    """Train the towers with this encoder's item tower and measure its recall; returns (results, per-click hits,
    (variant, trained item tower))."""
    spec = build_spec(ds, TrainConfig(retrieval=cfg.retrieval))
    variant = build_variant(name, ds, spec)
    torch.manual_seed(cfg.retrieval.seed)  # every variant starts from the same seed, as train_two_tower's default
    t0 = time.perf_counter()
    item, user, losses = train_two_tower(ds, spec, cfg.retrieval, variant.make_tower(), variant.inputs)
    train_s = time.perf_counter() - t0
    vecs = item_vectors(item, variant.inputs)
    dev_users = user_vectors(user, ds.dev, vecs)
    weight, _ = tune_popularity_weight(ds, counters, vecs, user_vectors(user, ds.train, vecs), cfg.recall_k)
    hits = {"tower": recall_hits(sample, vecs, dev_users, 0.0, cfg.recall_k),
            "with_popularity": recall_hits(sample, vecs, dev_users, weight, cfg.recall_k)}
    result = {"encoder": name, "description": variant.description,
              **recall_summary(hits["tower"], sample),
              "popularity_weight": weight, **recall_summary(hits["with_popularity"], sample, "pop_"),
              **tower_size(variant, item),
              "train_seconds": train_s, "text_precompute_seconds": variant.text_seconds,
              "train_loss": losses}
    return result, hits, (variant, item)


def compare_encoders(world_dir: Path, cfg: EncoderCompareConfig = EncoderCompareConfig()) -> dict:
    unknown = sorted(set(cfg.encoders) - set(ENCODERS))
    if unknown or not cfg.encoders:
        raise ValueError(f"unknown or no encoders {unknown}: choose from {', '.join(ENCODERS)}")
    torch.set_num_threads(cfg.threads)
    world_dir = Path(world_dir)
    ds = load_dataset(world_dir, TrainConfig().history_len)
    truth = GroundTruth.load(world_dir) if (world_dir / "truth").exists() else None
    counters = LogCounters(ds)
    sample = sample_clicks(ds, truth, counters, cfg.recall_k, cfg.impressions, cfg.seed)
    results, hits, arms = [], {}, {}
    for name in cfg.encoders:
        r, hits[name], arms[name] = run_encoder(name, ds, sample, counters, cfg)
        results.append(r)
    costs = encode_costs(arms, len(ds.articles.news_ids), cfg.cost_articles, cfg.cost_batch, seed=cfg.seed)
    for r in results:
        r.update(costs[r["encoder"]])
    base = cfg.encoders[0]
    for r in results[1:]:
        h, b = hits[r["encoder"]], hits[base]
        r[f"vs_{base}"] = {"recall": paired_delta(h["tower"], b["tower"]),
                           "cold_recall": paired_delta(h["tower"][sample.cold], b["tower"][sample.cold]),
                           "pop_recall": paired_delta(h["with_popularity"], b["with_popularity"])}
    oracle = None if sample.oracle_hits is None else recall_summary(sample.oracle_hits, sample)
    # a random ranking finds a click with probability K / pool size
    chance = np.concatenate([np.full(c.size, min(1.0, cfg.recall_k / max(p.size, 1)))
                             for p, c in zip(sample.pools, sample.clicks)])
    cut = ds.origin + pd.Timedelta(seconds=float(ds.train.imp_t.max()))
    return {"world": str(world_dir), "k": cfg.recall_k, "training_cut": cut.isoformat(),
            "impressions": int(sample.imps.size), "clicks": int(sample.cold.size),
            "cold_clicks": int(sample.cold.sum()), "articles": int(len(ds.articles.news_ids)),
            "chance_recall_at_k": float(chance.mean()), "oracle": oracle, "encoders": results,
            "config": dataclasses.asdict(cfg)}
