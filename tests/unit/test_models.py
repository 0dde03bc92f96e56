"""Model shapes, invariants, and torch-vs-ONNX parity (max abs error <= 1e-4) on random and real inputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.dataset import load_dataset
from recsys.export import check_parity, export_onnx
from recsys.features import FeatureSpec
from recsys.models.item_tower import ItemTower
from recsys.models.ranker import Ranker
from recsys.models.user_tower import N_PROFILE, UserTower
from recsys.retrieval import item_vectors, user_inputs

FIXTURE = Path(__file__).parents[1] / "fixtures" / "mind_small"
D, H = 16, 10


def _item_inputs(b: int, length: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(b)
    tokens = torch.randint(1, 500, (b, length), generator=g)
    tokens[:, length // 2:] = 0  # padding
    return {"category": torch.randint(0, 5, (b,), generator=g), "subcategory": torch.randint(0, 9, (b,), generator=g),
            "tokens": tokens}


def _user_inputs(b: int, n: int = H) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(b)
    mask = (torch.rand(b, n, generator=g) > 0.3).float()
    mask[0] = 0.0  # a reader with no history at all
    return {"hist_vecs": torch.randn(b, n, D, generator=g) * mask.unsqueeze(-1), "hist_mask": mask,
            "profile": torch.rand(b, N_PROFILE, generator=g)}


def test_towers_give_unit_vectors_and_ranker_one_logit_per_row():
    item, user, ranker = ItemTower(5, 9, 500, D), UserTower(D, H), Ranker(11)
    with torch.no_grad():
        v = item(**_item_inputs(7))
        u = user(**_user_inputs(7))
        s = ranker(torch.randn(7, 11))
    assert v.shape == (7, D) and u.shape == (7, D) and s.shape == (7,)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(7))
    torch.testing.assert_close(u.norm(dim=1), torch.ones(7))
    assert torch.isfinite(u).all()  # an empty history pools to zero, not NaN


def test_user_tower_ignores_padding():
    user = UserTower(D, H).eval()
    x = _user_inputs(4)
    noisy = dict(x, hist_vecs=x["hist_vecs"] + 5.0 * (1 - x["hist_mask"]).unsqueeze(-1))
    with torch.no_grad():
        torch.testing.assert_close(user(**x), user(**noisy))


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_onnx_parity_random_inputs(tmp_path, batch):
    cases = [
        (ItemTower(5, 9, 500, D), _item_inputs, {"tokens": {1: "tokens"}}, "item_vec"),
        (UserTower(D, H), _user_inputs, {"hist_vecs": {1: "history"}, "hist_mask": {1: "history"}}, "user_vec"),
        (Ranker(11), lambda b: {"features": torch.randn(b, 11)}, None, "score"),
    ]
    for i, (module, make, axes, out) in enumerate(cases):
        path = export_onnx(module, make(8), out, tmp_path / f"m{i}.onnx", dynamic_axes=axes)
        assert check_parity(module, path, make(batch)) <= 1e-4


def test_onnx_parity_real_inputs_from_a_mind_directory(tmp_path):
    ds = load_dataset(FIXTURE, history_len=H)
    spec = FeatureSpec(categories=("<unk>", *sorted(set(ds.articles.category_name))),
                       subcategories=("<unk>", *sorted(set(ds.articles.subcategory_name))), embedding_dim=D,
                       history_len=H)
    item = ItemTower(len(spec.categories), len(spec.subcategories), spec.token_buckets, D)
    real_items = {k: torch.from_numpy(v) for k, v in ds.articles.model_inputs(spec).items()}
    path = export_onnx(item, real_items, "item_vec", tmp_path / "item.onnx", dynamic_axes={"tokens": {1: "tokens"}})
    assert check_parity(item, path, real_items) <= 1e-4
    user = UserTower(D, H)
    vecs = item_vectors(item, ds.articles.model_inputs(spec))
    real_users = {k: torch.from_numpy(v) for k, v in user_inputs(ds.train.history, vecs).items()}
    path = export_onnx(user, real_users, "user_vec", tmp_path / "user.onnx",
                       dynamic_axes={"hist_vecs": {1: "history"}, "hist_mask": {1: "history"}})
    assert check_parity(user, path, real_users) <= 1e-4
    assert np.isfinite(vecs).all()
