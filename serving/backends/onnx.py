"""The default backend: the version's ONNX models on onnxruntime (CPU; CUDA/TensorRT providers if installed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.bundle import ModelBundle


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, version_dir: Path, intra_op_threads: int = 1):
        self._bundle = ModelBundle.load(version_dir, intra_op_threads)
        self.spec = self._bundle.spec
        self.providers = self._bundle.ranker.providers

    def item_vectors(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._bundle.item_vectors(inputs)

    def user_vectors(self, history: np.ndarray, item_vecs: np.ndarray) -> np.ndarray:
        return self._bundle.user_vectors(history, item_vecs)

    def rank(self, features: np.ndarray) -> np.ndarray:
        return self._bundle.rank(features)
