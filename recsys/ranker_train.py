"""Ranker training: binary cross-entropy on shown rows (clicked vs not), the loss kept out of the module."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from recsys.models.ranker import Ranker


@dataclass(frozen=True)
class RankerConfig:
    epochs: int = 2
    batch_size: int = 4096
    lr: float = 2e-3
    hidden: tuple[int, ...] = (256, 128, 64)
    seed: int = 0


def train_ranker(features: np.ndarray, labels: np.ndarray, cfg: RankerConfig) -> tuple[Ranker, list[float]]:
    """features (R, F) float32, labels (R,) in {0, 1}; returns the ranker (eval mode) and per-epoch mean loss."""
    if features.shape[0] != labels.shape[0]:
        raise ValueError(f"{features.shape[0]} feature rows but {labels.shape[0]} labels")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    x, y = torch.from_numpy(features), torch.from_numpy(labels.astype(np.float32))
    model = Ranker(features.shape[1], cfg.hidden)
    model.set_standardization(x.mean(0), x.std(0))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(y)))
        total, steps = 0.0, 0
        for s in tqdm(range(0, len(y), cfg.batch_size), desc=f"ranker epoch {epoch + 1}/{cfg.epochs}", leave=False):
            b = order[s:s + cfg.batch_size]
            loss = F.binary_cross_entropy_with_logits(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
    return model.eval(), losses


def score(model: Ranker, features: np.ndarray, batch: int = 65_536) -> np.ndarray:
    """(R,) logits in eval mode without gradients."""
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(features[s:s + batch])).numpy()
                               for s in range(0, len(features), batch)]) if len(features) else np.zeros(0)
