"""Item tower over a precomputed text embedding (e.g. frozen all-MiniLM-L6-v2): category, subcategory and a trained
projection of the sentence vector -> a unit vector. Same shape as ItemTower, so training and retrieval reuse it."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class EmbeddingItemTower(nn.Module):
    """forward(category [B] int64, subcategory [B] int64, text_emb [B, T] float32) -> [B, D] unit vectors.

    The text encoder stays outside (frozen, run once per article); only the projection T -> D and what follows
    are trained, with the same category/subcategory embeddings and MLP as ItemTower.
    """

    def __init__(self, n_categories: int, n_subcategories: int, text_dim: int, dim: int = 64):
        super().__init__()
        self.category = nn.Embedding(n_categories, dim)
        self.subcategory = nn.Embedding(n_subcategories, dim)
        self.text = nn.Linear(text_dim, dim)
        self.mlp = nn.Sequential(nn.Linear(3 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, category: torch.Tensor, subcategory: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.category(category), self.subcategory(subcategory), self.text(text_emb)], dim=-1)
        return F.normalize(self.mlp(h), dim=-1)
