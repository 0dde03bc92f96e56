"""Two-tower retrieval training: in-batch sampled softmax with log-Q popularity correction, and the helpers
that turn histories into user-tower inputs (shared by the ranker's features and the evaluator)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from recsys.dataset import Dataset, Split
from recsys.features import FeatureSpec
from recsys.models.item_tower import ItemTower
from recsys.models.user_tower import UserTower


@dataclass(frozen=True)
class RetrievalConfig:
    epochs: int = 4
    batch_size: int = 512
    lr: float = 3e-3
    temperature: float = 0.05
    log_q_weight: float = 1.0  # 1 = full log-Q popularity correction, 0 = none
    seed: int = 0


def profile_features(history_len: np.ndarray) -> np.ndarray:
    """(n, 2) user-tower profile: log1p(history length) / 4 and an empty-history flag."""
    h = np.asarray(history_len, dtype=np.float32)
    return np.stack([np.log1p(h) / 4.0, (h == 0).astype(np.float32)], axis=1)


def user_inputs(history: np.ndarray, item_vecs: np.ndarray | torch.Tensor) -> dict:
    """User-tower inputs from padded history rows (-1 = pad) and the item-vector table."""
    torch_mode = isinstance(item_vecs, torch.Tensor)
    mask = history >= 0
    idx = np.where(mask, history, 0)
    if torch_mode:
        m = torch.from_numpy(mask.astype(np.float32))
        return {"hist_vecs": item_vecs[torch.from_numpy(idx)] * m.unsqueeze(-1), "hist_mask": m,
                "profile": torch.from_numpy(profile_features(mask.sum(1)))}
    return {"hist_vecs": (item_vecs[idx] * mask[..., None]).astype(np.float32),
            "hist_mask": mask.astype(np.float32), "profile": profile_features(mask.sum(1))}


def item_vectors(item_tower: ItemTower, inputs: dict[str, np.ndarray], batch: int = 8192) -> np.ndarray:
    item_tower.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(inputs["category"]), batch):
            out.append(item_tower(**{k: torch.from_numpy(v[s:s + batch]) for k, v in inputs.items()}).numpy())
    return np.concatenate(out) if out else np.zeros((0, item_tower.mlp[-1].out_features), np.float32)


def user_vectors(user_tower: UserTower, split: Split, item_vecs: np.ndarray, batch: int = 4096) -> np.ndarray:
    """(I, D) one user vector per impression of `split` (its history at that time)."""
    user_tower.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(split.imp_id), batch):
            x = user_inputs(split.history[s:s + batch], item_vecs)
            out.append(user_tower(**{k: torch.from_numpy(v) for k, v in x.items()}).numpy())
    return np.concatenate(out)


def sample_live(articles_publish_s: np.ndarray, articles_expire_s: np.ndarray, at_s: np.ndarray,
                rng: np.random.Generator, tries: int = 8) -> np.ndarray:
    """One article live at each time in `at_s` (published at or before it, not yet expired), uniformly at random.

    Rejection sampling over articles published in the 48 h before; -1 where no try hit a live one.
    """
    order = np.argsort(articles_publish_s, kind="stable")
    pub = articles_publish_s[order]
    lo = np.searchsorted(pub, at_s - 48 * 3600, side="left")
    hi = np.searchsorted(pub, at_s, side="right")
    out = np.full(at_s.size, -1, dtype=np.int64)
    for _ in range(tries):
        todo = (out < 0) & (hi > lo)
        if not todo.any():
            break
        pick = order[lo[todo] + (rng.random(todo.sum()) * (hi[todo] - lo[todo])).astype(np.int64)]
        ok = articles_expire_s[pick] > at_s[todo]
        out[np.nonzero(todo)[0][ok]] = pick[ok]
    return out


def augment_items(item_vecs: np.ndarray, clicks_6h: np.ndarray, weight: float) -> np.ndarray:
    """(n, D+1) index vectors: the item vector plus weight * log1p(recent clicks) as a bias dimension."""
    bias = (weight * np.log1p(np.maximum(clicks_6h, 0.0))).astype(np.float32)[:, None]
    return np.hstack([item_vecs.astype(np.float32), bias])


def augment_users(user_vecs: np.ndarray) -> np.ndarray:
    """(n, D+1) query vectors matching augment_items: the bias dimension is read with weight 1."""
    return np.hstack([user_vecs.astype(np.float32), np.ones((len(user_vecs), 1), np.float32)])


def retrieval_scores(item_vecs: np.ndarray, clicks_6h: np.ndarray, user_vec: np.ndarray, weight: float
                     ) -> np.ndarray:
    """(n,) what the index ranks the pool by for one reader (exact inner product over augmented vectors)."""
    return augment_items(item_vecs, clicks_6h, weight) @ augment_users(user_vec[None, :])[0]


def train_two_tower(ds: Dataset, spec: FeatureSpec, cfg: RetrievalConfig, item_tower: nn.Module | None = None,
                    item_inputs: dict[str, np.ndarray] | None = None) -> tuple[nn.Module, UserTower, list]:
    """Train both towers on the train split's clicks; returns the towers and the per-epoch mean loss.

    item_tower / item_inputs (one row per article) replace the default ItemTower and its hashed-text inputs, e.g.
    a tower over precomputed sentence embeddings (recsys/encoder_compare.py); the training itself is unchanged.

    Mixed negative sampling: each batch's softmax runs over its own clicked articles (in-batch) plus one
    uniformly drawn live article per example (what retrieval must rank against at serving time). Each sampled
    column is corrected by log(expected times it is sampled per batch): B * click share for in-batch items plus
    B / live-pool size for uniform ones: the log-Q correction for this mixed sampler.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if item_tower is None:
        item_tower = ItemTower(len(spec.categories), len(spec.subcategories), spec.token_buckets,
                               spec.embedding_dim)
    user_tower = UserTower(spec.embedding_dim, spec.history_len)
    item_inputs = ds.articles.model_inputs(spec) if item_inputs is None else item_inputs
    inputs = {k: torch.from_numpy(v) for k, v in item_inputs.items()}
    a = ds.articles
    split = ds.train
    clicked = np.nonzero(split.row_label == 1)[0]
    target, imp = split.row_item[clicked], split.row_imp[clicked]
    click_share = np.bincount(target, minlength=len(a.news_ids)) / max(target.size, 1)
    live_at_clicks = ((a.publish_s[None, :] <= split.imp_t[imp[::97], None])
                      & (a.expire_s[None, :] > split.imp_t[imp[::97], None])).sum(1).mean()
    params = list(item_tower.parameters()) + list(user_tower.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    losses = []
    for epoch in range(cfg.epochs):
        item_tower.train()
        user_tower.train()
        order = rng.permutation(clicked.size)
        total, steps = 0.0, 0
        for s in tqdm(range(0, order.size, cfg.batch_size), desc=f"two-tower epoch {epoch + 1}/{cfg.epochs}",
                      leave=False):
            b = order[s:s + cfg.batch_size]
            hist = split.history[imp[b]]
            uniform = sample_live(a.publish_s, a.expire_s, split.imp_t[imp[b]], rng)
            uniform = uniform[uniform >= 0]
            columns = np.concatenate([target[b], uniform])
            # encode only the articles this step touches (targets, negatives, histories), not the whole catalogue
            need = np.unique(np.concatenate([columns, hist[hist >= 0]]))
            vecs = item_tower(**{k: v[torch.from_numpy(need)] for k, v in inputs.items()})
            local_hist = np.where(hist >= 0, np.searchsorted(need, np.maximum(hist, 0)), -1)
            u = user_tower(**user_inputs(local_hist, vecs))
            v_cols = vecs[torch.from_numpy(np.searchsorted(need, columns))]
            expected = len(b) * click_share[columns] + uniform.size / live_at_clicks
            log_q = torch.from_numpy(np.log(expected).astype(np.float32))
            logits = u @ v_cols.T / cfg.temperature - cfg.log_q_weight * log_q[None, :]
            cols = torch.from_numpy(columns)
            same = torch.from_numpy(target[b])[:, None] == cols[None, :]  # another copy of the positive
            own = torch.zeros_like(same)
            own[torch.arange(len(b)), torch.arange(len(b))] = True
            logits = logits.masked_fill(same & ~own, -1e4)
            loss = F.cross_entropy(logits, torch.arange(len(b)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
    return item_tower.eval(), user_tower.eval(), losses
