"""A model version's three ONNX models and its feature spec, loaded together: what evaluation and serving run.

Files in a version directory: item_tower.onnx, user_tower.onnx, ranker.onnx, feature_spec.json, and the same
weights as *.safetensors for the torch backend.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from recsys.export import OnnxModel, export_onnx, load_onnx
from recsys.features import FeatureSpec
from recsys.models.item_tower import ItemTower
from recsys.models.ranker import Ranker
from recsys.models.user_tower import N_PROFILE, UserTower
from recsys.retrieval import user_inputs

ITEM, USER, RANKER, SPEC = "item_tower.onnx", "user_tower.onnx", "ranker.onnx", "feature_spec.json"
# the same weights for the torch backend (debugging, naive baseline); safetensors, never pickle
WEIGHTS = {"item": "item_tower.safetensors", "user": "user_tower.safetensors", "ranker": "ranker.safetensors"}
ITEM_AXES = {"tokens": {1: "tokens"}}
USER_AXES = {"hist_vecs": {1: "history"}, "hist_mask": {1: "history"}}


def export_bundle(out_dir: Path, spec: FeatureSpec, item: ItemTower, user: UserTower, ranker: Ranker) -> Path:
    """Write the three ONNX models (dynamic batch), their safetensors weights and the spec into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, module in (("item", item), ("user", user), ("ranker", ranker)):
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(out_dir / WEIGHTS[key]))
    d, n = spec.embedding_dim, spec.history_len
    export_onnx(item, {"category": torch.zeros(2, dtype=torch.int64), "subcategory": torch.zeros(2, dtype=torch.int64),
                       "tokens": torch.ones(2, spec.max_tokens, dtype=torch.int64)}, "item_vec", out_dir / ITEM,
                dynamic_axes=ITEM_AXES)
    export_onnx(user, {"hist_vecs": torch.zeros(2, n, d), "hist_mask": torch.ones(2, n),
                       "profile": torch.zeros(2, N_PROFILE)}, "user_vec", out_dir / USER, dynamic_axes=USER_AXES)
    export_onnx(ranker, {"features": torch.zeros(2, len(spec.ranker_features))}, "score", out_dir / RANKER)
    (out_dir / SPEC).write_text(json.dumps(spec.to_json(), indent=1))
    return out_dir


@dataclass
class ModelBundle:
    spec: FeatureSpec
    item: OnnxModel
    user: OnnxModel
    ranker: OnnxModel

    @classmethod
    def load(cls, version_dir: Path, intra_op_threads: int = 1) -> ModelBundle:
        """Load a (verified) version directory; refuses a spec this code cannot build."""
        spec = FeatureSpec.from_json(json.loads((Path(version_dir) / SPEC).read_text()))
        spec.check_buildable()
        return cls(spec, *(load_onnx(Path(version_dir) / f, intra_op_threads=intra_op_threads)
                           for f in (ITEM, USER, RANKER)))

    def item_vectors(self, inputs: dict[str, np.ndarray], batch: int = 8192) -> np.ndarray:
        n = len(inputs["category"])
        return np.concatenate([self.item.run({k: v[s:s + batch] for k, v in inputs.items()})
                               for s in range(0, n, batch)]) if n else np.zeros((0, self.spec.embedding_dim),
                                                                                 np.float32)

    def user_vectors(self, history: np.ndarray, item_vecs: np.ndarray, batch: int = 4096) -> np.ndarray:
        """(n, D) from padded history rows (-1 = pad, most recent first) into the item-vector table."""
        return np.concatenate([self.user.run(user_inputs(history[s:s + batch], item_vecs))
                               for s in range(0, len(history), batch)])

    def rank(self, features: np.ndarray, batch: int = 65_536) -> np.ndarray:
        return np.concatenate([self.ranker.run({"features": features[s:s + batch]})
                               for s in range(0, len(features), batch)]) if len(features) else np.zeros(0)
