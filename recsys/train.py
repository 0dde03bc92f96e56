"""`newsrec train`: both towers, then the ranker on their outputs, exported to ONNX, checked for parity,
evaluated against the baselines and the oracle, and published to the model registry as one version."""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data.truth import GroundTruth
from recsys.bundle import ITEM, RANKER, USER, ModelBundle, export_bundle
from recsys.dataset import Dataset, load_dataset
from recsys.evaluate import REFERENCES, EvalConfig, evaluate
from recsys.export import check_parity
from recsys.features import FeatureSpec
from recsys.ranker_train import RankerConfig, train_ranker
from recsys.ranking_data import LogCounters, position_prior, ranker_rows
from recsys.registry import ModelRegistry, ModelVersion
from recsys.retrieval import (RetrievalConfig, item_vectors, retrieval_scores, train_two_tower, user_inputs,
                              user_vectors)


@dataclass(frozen=True)
class TrainConfig:
    retrieval: RetrievalConfig = field(default_factory=lambda: RetrievalConfig(epochs=2, batch_size=256))
    ranker: RankerConfig = field(default_factory=lambda: RankerConfig(epochs=3))
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    history_len: int = 50
    embedding_dim: int = 64
    threads: int = 2


@dataclass
class TrainResult:
    version: ModelVersion
    results: list[dict]
    seconds: dict[str, float]


def build_spec(ds: Dataset, cfg: TrainConfig) -> FeatureSpec:
    """The feature spec a model trained on `ds` expects; vocabularies keep index 0 for unknown labels."""
    return FeatureSpec(categories=("<unk>", *sorted(set(ds.articles.category_name))),
                       subcategories=("<unk>", *sorted(set(ds.articles.subcategory_name))),
                       history_len=cfg.history_len, embedding_dim=cfg.embedding_dim,
                       position_prior=position_prior(ds.train))


def _parity(staging: Path, item, user, ranker, ds: Dataset, spec: FeatureSpec, x: np.ndarray) -> dict[str, float]:
    """Max abs error torch vs ONNX on real inputs (the first rows of the data)."""
    items = {k: torch.from_numpy(v[:256]) for k, v in ds.articles.model_inputs(spec).items()}
    vecs = item_vectors(item, ds.articles.model_inputs(spec))
    users = {k: torch.from_numpy(v) for k, v in user_inputs(ds.dev.history[:256], vecs).items()}
    return {"item_tower": check_parity(item, staging / ITEM, items),
            "user_tower": check_parity(user, staging / USER, users),
            "ranker": check_parity(ranker, staging / RANKER, {"features": torch.from_numpy(x[:4096])})}


def tune_popularity_weight(ds: Dataset, counters: LogCounters, item_vecs: np.ndarray, user_vecs: np.ndarray,
                           k: int, grid: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
                           n_impressions: int = 500, seed: int = 0) -> tuple[float, dict[float, float]]:
    """Pick the index's popularity weight by recall@k on the train split's last 12 hours (never on dev).

    user_vecs: one per train impression. Returns the best weight and recall for every weight tried.
    """
    sp, a, rng = ds.train, ds.articles, np.random.default_rng(seed)
    clicked = np.nonzero(sp.row_label == 1)[0]
    late = np.unique(sp.row_imp[clicked])
    late = late[sp.imp_t[late] >= sp.imp_t.max() - 12 * 3600]
    hits: dict[float, list[bool]] = {w: [] for w in grid}
    for i in rng.choice(late, min(n_impressions, late.size), replace=False):
        t = sp.imp_t[i]
        pool = np.nonzero((a.publish_s <= t) & (a.expire_s > t))[0]
        pop = counters.clicks(pool, np.full(pool.size, t), 6.0)
        clicks = sp.row_item[clicked[sp.row_imp[clicked] == i]]
        for w in grid:
            top = pool[np.argsort(-retrieval_scores(item_vecs[pool], pop, user_vecs[i], w), kind="stable")[:k]]
            hits[w].extend(np.isin(clicks, top))
    recall = {w: float(np.mean(h)) if h else 0.0 for w, h in hits.items()}
    return max(recall, key=recall.get), recall


def summary(results: list[dict]) -> dict:
    """The headline numbers for the manifest: the model's metrics and its recall relative to the oracle's."""
    by = {r["model"]: r for r in results}
    m, o = by["model"], by.get("oracle")
    out = {k: m[k] for k in ("auc", "mrr", "ndcg5", "ndcg10", "recall_at_k", "gap_closed", "k")}
    out["auc_position_free"] = by["model_position_free"]["auc"]
    out["popularity_auc"] = by["popularity"]["auc"]  # the two ends of gap_closed
    if o is not None:
        out["oracle_auc"] = o["auc"]
    for name in REFERENCES:  # the oracle told only what the log reveals of readers' interests (recsys.evaluate)
        if name in by:
            out[f"{name}_auc"] = by[name]["auc"]
            out[f"{name}_gap_closed"] = by[name]["gap_closed"]
    if o is not None and o.get("recall_at_k"):
        out["recall_vs_oracle"] = m["recall_at_k"] / o["recall_at_k"]
    return out


def train(world_dir: Path, registry: ModelRegistry, cfg: TrainConfig = TrainConfig(), promote: bool = True
          ) -> TrainResult:
    torch.set_num_threads(cfg.threads)
    seconds, t0 = {}, time.perf_counter()
    ds = load_dataset(world_dir, cfg.history_len)
    spec = build_spec(ds, cfg)
    seconds["load"] = time.perf_counter() - t0
    item, user, tower_losses = train_two_tower(ds, spec, cfg.retrieval)
    seconds["two_tower"] = time.perf_counter() - t0 - sum(seconds.values())
    counters = LogCounters(ds)
    vecs = item_vectors(item, ds.articles.model_inputs(spec))
    train_users = user_vectors(user, ds.train, vecs)
    weight, weight_recall = tune_popularity_weight(ds, counters, vecs, train_users, cfg.evaluation.recall_k)
    spec = dataclasses.replace(spec, retrieval_popularity_weight=weight)
    x = ranker_rows(ds, ds.train, spec, vecs, train_users, counters)
    ranker, ranker_losses = train_ranker(x, ds.train.row_label, cfg.ranker)
    seconds["ranker"] = time.perf_counter() - t0 - sum(seconds.values())
    with tempfile.TemporaryDirectory(prefix="newsrec-train-") as tmp:
        staging = export_bundle(Path(tmp), spec, item, user, ranker)
        parity = _parity(staging, item, user, ranker, ds, spec, x)
        truth = GroundTruth.load(world_dir) if (Path(world_dir) / "truth").exists() else None
        results = evaluate(ds, ModelBundle.load(staging), truth, cfg.evaluation)
        seconds["export_evaluate"] = time.perf_counter() - t0 - sum(seconds.values())
        metrics = {"summary": summary(results), "systems": results, "onnx_parity_max_abs_error": parity,
                   "retrieval_popularity_weight_recall": {str(w): r for w, r in weight_recall.items()},
                   "train_loss": {"two_tower": tower_losses, "ranker": ranker_losses}, "seconds": seconds}
        version = registry.publish(staging, training_config=dataclasses.asdict(cfg), feature_spec=spec.to_json(),
                                   data_range=ds.data_range(), metrics=metrics,
                                   parent=registry.current() if registry.root.is_dir() else None,
                                   kind="newsrec-models", name="two-tower+ranker")
    if promote:
        registry.promote(version.version)
    return TrainResult(version, results, seconds)
