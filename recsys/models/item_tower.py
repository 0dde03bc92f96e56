"""Item tower: category, subcategory and title/abstract words -> a unit vector. Content only, so an article
published a second ago gets a good vector at once (retrieval's cold start)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ItemTower(nn.Module):
    """forward(category [B] int64, subcategory [B] int64, tokens [B, L] int64, 0 = pad) -> [B, D] unit vectors."""

    def __init__(self, n_categories: int, n_subcategories: int, token_buckets: int, dim: int = 64):
        super().__init__()
        self.category = nn.Embedding(n_categories, dim)
        self.subcategory = nn.Embedding(n_subcategories, dim)
        self.words = nn.Embedding(token_buckets, dim, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(3 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, category: torch.Tensor, subcategory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens > 0).to(torch.float32).unsqueeze(-1)
        text = (self.words(tokens) * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # masked mean of word vectors
        h = torch.cat([self.category(category), self.subcategory(subcategory), text], dim=-1)
        return F.normalize(self.mlp(h), dim=-1)
