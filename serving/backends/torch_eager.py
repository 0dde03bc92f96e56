"""The torch backend: the same version's weights (safetensors) in PyTorch eager mode, for debugging and as the
naive baseline of `newsrec bench serve`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from recsys.bundle import SPEC, WEIGHTS
from recsys.features import FeatureSpec
from recsys.models.item_tower import ItemTower
from recsys.models.ranker import Ranker
from recsys.models.user_tower import UserTower
from recsys.retrieval import user_inputs


def _ranker_hidden(state: dict[str, torch.Tensor]) -> tuple[int, ...]:
    layers = sorted((int(k.split(".")[1]), v) for k, v in state.items() if k.startswith("mlp.") and k.endswith("weight"))
    return tuple(v.shape[0] for _, v in layers[:-1])


class TorchBackend:
    name = "torch"

    def __init__(self, version_dir: Path, intra_op_threads: int = 1):
        torch.set_num_threads(intra_op_threads)
        d = Path(version_dir)
        self.spec = FeatureSpec.from_json(json.loads((d / SPEC).read_text()))
        self.spec.check_buildable()
        s = self.spec
        self.item = ItemTower(len(s.categories), len(s.subcategories), s.token_buckets, s.embedding_dim)
        self.user = UserTower(s.embedding_dim, s.history_len)
        ranker_state = load_file(str(d / WEIGHTS["ranker"]))
        self.ranker = Ranker(len(s.ranker_features), _ranker_hidden(ranker_state))
        for module, state in ((self.item, load_file(str(d / WEIGHTS["item"]))),
                              (self.user, load_file(str(d / WEIGHTS["user"]))), (self.ranker, ranker_state)):
            module.load_state_dict(state)
            module.eval()

    def item_vectors(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return self.item(**{k: torch.from_numpy(v) for k, v in inputs.items()}).numpy()

    def user_vectors(self, history: np.ndarray, item_vecs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.user(**{k: torch.from_numpy(v) for k, v in user_inputs(history, item_vecs).items()}).numpy()

    def rank(self, features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.ranker(torch.from_numpy(features)).numpy()
