"""Ranker: an MLP over the feature vector of recsys.features (one row per candidate) -> a click logit."""
from __future__ import annotations

import torch
from torch import nn


class Ranker(nn.Module):
    """forward(features [B, F] float32, standardized inside) -> [B] logits."""

    def __init__(self, n_features: int, hidden: tuple[int, ...] = (256, 128, 64)):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        layers, width = [], n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1))

    def set_standardization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp((features - self.mean) / self.std).squeeze(-1)
