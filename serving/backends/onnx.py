"""The default backend: the version's ONNX models on onnxruntime (CPU; CUDA/TensorRT providers if installed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.bundle import ModelBundle
from recsys.export import load_onnx
from recsys.retrieval import user_inputs

# Request-sized calls (one reader, ~500 candidates) go straight to the sessions: OnnxModel.run's per-call checks
# of names, dtypes and axes cost ~25 us each, twice per request, while the pipeline builds these inputs itself
# from the spec. Larger calls (item vectors at load, offline use) keep the checked, chunked path.
DIRECT_MAX_ROWS = 4_096


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, version_dir: Path, intra_op_threads: int = 1, ranker_path: Path | None = None):
        self._bundle = ModelBundle.load(version_dir, intra_op_threads)
        if ranker_path is not None:  # e.g. the int8 ranker of a child version: same inputs, same output
            self._bundle.ranker = load_onnx(ranker_path, intra_op_threads)
            self.name = f"{self.name}+ranker:{Path(ranker_path).parent.name}"  # in /metrics' model info
        self.spec = self._bundle.spec
        self.providers = self._bundle.ranker.providers
        self._user, self._ranker = self._bundle.user, self._bundle.ranker

    def item_vectors(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._bundle.item_vectors(inputs)

    def user_vectors(self, history: np.ndarray, item_vecs: np.ndarray) -> np.ndarray:
        if not 0 < len(history) <= DIRECT_MAX_ROWS or history.dtype.kind not in "iu":
            return self._bundle.user_vectors(history, item_vecs)
        return self._user.session.run([self._user.output_name], user_inputs(history, item_vecs))[0]

    def rank(self, features: np.ndarray) -> np.ndarray:
        if not 0 < len(features) <= DIRECT_MAX_ROWS or features.dtype != np.float32 or features.ndim != 2:
            return self._bundle.rank(features)
        return self._ranker.session.run([self._ranker.output_name], {"features": features})[0]
