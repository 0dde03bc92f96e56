"""User tower: attention pooling over the item vectors of the last N clicks (most recent first), plus profile
features -> a unit vector in the item space. Recency has its own learned attention bias, so drift shows fast."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

N_PROFILE = 2  # log1p(history length) / 4, empty-history flag


class UserTower(nn.Module):
    """forward(hist_vecs [B, N, D], hist_mask [B, N] 1 = real click, profile [B, P]) -> [B, D] unit vectors."""

    def __init__(self, dim: int = 64, history_len: int = 50, n_profile: int = N_PROFILE):
        super().__init__()
        self.key = nn.Linear(dim, dim)
        self.query = nn.Parameter(torch.randn(dim) / dim**0.5)
        self.recency = nn.Parameter(torch.zeros(history_len))
        self.mlp = nn.Sequential(nn.Linear(dim + n_profile, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, hist_vecs: torch.Tensor, hist_mask: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
        n = hist_vecs.shape[1]
        scores = torch.tanh(self.key(hist_vecs)) @ self.query + self.recency[:n]
        scores = scores.masked_fill(hist_mask <= 0, -1e4)
        weights = torch.softmax(scores, dim=1) * (hist_mask > 0).to(hist_vecs.dtype)  # all-pad rows pool to 0
        pooled = (weights.unsqueeze(-1) * hist_vecs).sum(1)
        # residual: the pooled history already points at the reader's topics; the MLP refines it with the profile
        return F.normalize(pooled + self.mlp(torch.cat([pooled, profile], dim=-1)), dim=-1)
