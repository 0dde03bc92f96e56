"""The contract every inference backend meets: batch-first numpy in, numpy out, output length = input length."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from recsys.features import FeatureSpec


class InferenceBackend(Protocol):
    """Runs a model version's three models. Implementations: OnnxBackend, TorchBackend."""

    name: str
    spec: FeatureSpec

    def item_vectors(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Item-tower inputs for n articles -> (n, D) float32 unit vectors."""

    def user_vectors(self, history: np.ndarray, item_vecs: np.ndarray) -> np.ndarray:
        """(n, H) padded history rows (-1 = pad) into the (A, D) item-vector table -> (n, D) unit vectors."""

    def rank(self, features: np.ndarray) -> np.ndarray:
        """(n, F) ranker features -> (n,) click logits."""
