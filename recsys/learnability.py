"""Learnability check of a news world: per-impression AUC of popularity, a content+history baseline and the
oracle (the true click probability), on the future (dev) split. A world is worth learning on only if the oracle
leaves room above popularity.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data import mind
from data.schema import BEHAVIORS_FILE, NEWS_FILE
from data.truth import GroundTruth
from recsys.baselines import content_history_scores, popularity_scores
from recsys.metrics import per_impression_auc


def _shown(behaviors: pd.DataFrame) -> pd.DataFrame:
    shown = mind.explode_impressions(behaviors)
    counts = mind.impression_lengths(behaviors)
    shown["history"] = np.repeat(behaviors["history"].to_numpy(), counts)
    return shown


def learnability_report(world_dir: Path) -> dict:
    """AUCs on DIR/dev, with popularity counted over train + dev clicks before each display time."""
    world_dir = Path(world_dir)
    train = mind.read_behaviors_table(world_dir / "train" / BEHAVIORS_FILE)
    dev = mind.read_behaviors_table(world_dir / "dev" / BEHAVIORS_FILE)
    news = mind.read_news_table(world_dir / "dev" / NEWS_FILE)
    shown = _shown(dev)
    log = pd.concat([mind.explode_impressions(train), shown.drop(columns="history")], ignore_index=True)
    truth = GroundTruth.load(world_dir)
    imp_ids, offsets, probs = truth.impression_probs()
    first = np.searchsorted(imp_ids, dev["impression_id"].to_numpy())
    oracle = np.concatenate([probs[offsets[i]:offsets[i + 1]] for i in first])
    if oracle.size != len(shown):
        raise ValueError("truth/click_probs.npz does not match dev/behaviors.tsv")
    group, label = shown["impression_id"].to_numpy(), shown["clicked"].to_numpy()
    aucs = {
        "popularity": per_impression_auc(group, label, popularity_scores(shown, log)),
        "content_history": per_impression_auc(group, label, content_history_scores(shown, news)),
        "oracle": per_impression_auc(group, label, oracle),
    }
    report = {f"{name}_auc": round(float(a.mean()), 4) for name, a in aucs.items()}
    report["n_impressions"] = int(aucs["oracle"].size)
    report["oracle_minus_popularity"] = round(report["oracle_auc"] - report["popularity_auc"], 4)
    return report
