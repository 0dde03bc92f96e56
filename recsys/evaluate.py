"""Offline evaluation on the future (dev) split: the model against popularity, recency, random and the oracle.

Ranking: MIND metrics over logged impressions. Retrieval: recall@K of each clicked article among all articles
live at display time. Beyond accuracy: coverage, category diversity and mean age of each system's top-10 over
the live pool (the model's top-10 is the full pipeline: tower top-K, then the ranker at position 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.truth import GroundTruth
from recsys.bundle import ModelBundle
from recsys.dataset import Dataset, Split
from recsys.interest_references import reference_scores
from recsys.metrics import ranking_metrics
from recsys.ranking_data import LogCounters, ranker_rows
from recsys.retrieval import retrieval_scores

REFERENCES = ("oracle_history", "oracle_history_shows", "oracle_told_changes")
SYSTEMS = ("model", "model_position_free", "popularity", "recency", "random", "oracle", *REFERENCES)
# The references (ranking metrics only) are the true click model with the reader's interests estimated from what the
# log says of them: oracle_history from their click history (data.history_oracle); oracle_history_shows adds every
# earlier show, clicked or not; oracle_told_changes is also told when and how much each reader's interests changed
# (recsys.interest_references). Between the last and the oracle lies what no model can learn from the log.


@dataclass(frozen=True)
class EvalConfig:
    recall_k: int = 200
    retrieval_impressions: int = 1_000  # sampled dev impressions with a click, for the live-pool metrics
    top_n: int = 10
    seed: int = 0


def oracle_scores(truth: GroundTruth, split: Split) -> np.ndarray:
    """True click probability of every shown row of `split`, aligned through impression ids."""
    ids, offsets, probs = truth.impression_probs()
    at = np.searchsorted(ids, split.imp_id)
    if not np.array_equal(ids[np.minimum(at, ids.size - 1)], split.imp_id):
        raise ValueError("ground truth does not cover every dev impression")
    out = np.concatenate([probs[offsets[i]:offsets[i + 1]] for i in at])
    if out.size != split.row_item.size:
        raise ValueError("ground truth click probabilities do not match the dev impressions")
    return out


def _candidates_split(dev: Split, imps: np.ndarray, cands: list[np.ndarray]) -> Split:
    """A split whose rows are arbitrary candidates for sampled impressions, unlabelled, at slot 0."""
    sizes = np.array([c.size for c in cands])
    return Split(imp_id=dev.imp_id[imps], imp_user=dev.imp_user[imps], imp_t=dev.imp_t[imps],
                 history=dev.history[imps], history_len=dev.history_len[imps],
                 row_imp=np.repeat(np.arange(imps.size), sizes), row_item=np.concatenate(cands),
                 row_pos=np.zeros(sizes.sum(), dtype=np.int64), row_label=np.full(sizes.sum(), -1, np.int8))


def _live_pool_metrics(ds: Dataset, bundle: ModelBundle, truth: GroundTruth | None, counters: LogCounters,
                       item_vecs: np.ndarray, user_vecs: np.ndarray, cfg: EvalConfig) -> dict[str, dict]:
    a, dev, rng = ds.articles, ds.dev, np.random.default_rng(cfg.seed)
    clicked = np.nonzero(dev.row_label == 1)[0]
    with_click = np.unique(dev.row_imp[clicked])
    imps = np.sort(rng.choice(with_click, min(cfg.retrieval_impressions, with_click.size), replace=False))
    pools: list[np.ndarray] = []
    top: dict[str, list[np.ndarray]] = {s: [] for s in SYSTEMS if s != "model_position_free" and s not in REFERENCES}
    hits: dict[str, list[bool]] = {s: [] for s in top}
    retrieved = []
    for i in imps:
        t = dev.imp_t[i]
        pool = np.nonzero((a.publish_s <= t) & (a.expire_s > t))[0]
        pools.append(pool)
        pop = counters.clicks(pool, np.full(pool.size, t), 6.0)
        scores = {"model": retrieval_scores(item_vecs[pool], pop, user_vecs[i],
                                            bundle.spec.retrieval_popularity_weight),
                  "popularity": pop,
                  "recency": a.publish_s[pool], "random": rng.random(pool.size)}
        if truth is not None:
            scores["oracle"] = truth.click_prob(dev.imp_user[i], list(a.news_ids[pool]), t, np.zeros(pool.size))
        clicks = dev.row_item[clicked[dev.row_imp[clicked] == i]]
        for name, s in scores.items():
            order = pool[np.argsort(-s, kind="stable")]
            hits[name].extend(np.isin(clicks, order[:cfg.recall_k]))
            top[name].append(order[:cfg.top_n])
        retrieved.append(pool[np.argsort(-scores["model"], kind="stable")[:cfg.recall_k]])
    # the model's shown top-N is the pipeline's, not the tower's: the ranker (slot 0) over the retrieved candidates
    cand = _candidates_split(dev, imps, retrieved)
    cand_scores = bundle.rank(ranker_rows(ds, cand, bundle.spec, item_vecs, user_vecs[imps], counters))
    top["model"] = [c[np.argsort(-cand_scores[cand.row_imp == j])[:cfg.top_n]] for j, c in enumerate(retrieved)]
    all_pool = np.unique(np.concatenate(pools))
    out = {}
    for name in top:
        if not top[name]:
            continue
        lists = top[name]
        ages = [np.mean((dev.imp_t[i] - a.publish_s[lst]) / 3600.0) for i, lst in zip(imps, lists)]
        out[name] = {"recall_at_k": float(np.mean(hits[name])) if hits[name] else None,
                     "coverage": float(np.unique(np.concatenate(lists)).size / all_pool.size),
                     "category_diversity": float(np.mean([np.unique(a.category_name[lst]).size for lst in lists])),
                     "mean_age_h": float(np.mean(ages))}
    return out


def evaluate(ds: Dataset, bundle: ModelBundle, truth: GroundTruth | None, cfg: EvalConfig = EvalConfig()
             ) -> list[dict]:
    """One dict per system: auc, mrr, ndcg5, ndcg10, recall_at_k, gap_closed and the beyond-accuracy metrics."""
    spec, dev = bundle.spec, ds.dev
    if (dev.row_label < 0).any():
        raise ValueError("the dev split is unlabelled: evaluation needs clicks")
    counters = LogCounters(ds)
    item_vecs = bundle.item_vectors(ds.articles.model_inputs(spec))
    user_vecs = bundle.user_vectors(dev.history, item_vecs)
    x = ranker_rows(ds, dev, spec, item_vecs, user_vecs, counters)
    x_free = x.copy()
    x_free[:, spec.ranker_features.index("position")] = 0.0
    scores = {"model": bundle.rank(x), "model_position_free": bundle.rank(x_free),
              "popularity": counters.clicks(dev.row_item, dev.row_t, 6.0),
              "recency": ds.articles.publish_s[dev.row_item],
              "random": np.random.default_rng(cfg.seed).random(dev.row_item.size)}
    if truth is not None:
        scores["oracle"] = oracle_scores(truth, dev)
        scores |= reference_scores(ds, truth)
    ranking = {name: ranking_metrics(dev.row_imp, dev.row_label, s).to_json() for name, s in scores.items()}
    pool = _live_pool_metrics(ds, bundle, truth, counters, item_vecs, user_vecs, cfg)
    pop, oracle = ranking["popularity"]["auc"], ranking.get("oracle", {}).get("auc")
    results = []
    for name, r in ranking.items():
        gap = (r["auc"] - pop) / (oracle - pop) if oracle is not None and oracle != pop else None
        results.append({"model": name, **r, "recall_at_k": None, "k": cfg.recall_k, "gap_closed": gap,
                        **pool.get("model" if name == "model_position_free" else name, {})})
    return results
