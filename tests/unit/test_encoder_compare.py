"""The encoder comparison's pieces that need no pre-trained model: the embedding item tower's shapes, recall
summaries against the oracle on hand-made hits, and the paired difference with its standard error."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.encoder_compare import ClickSample, EncoderCompareConfig, compare_encoders, paired_delta, recall_summary
from recsys.models.embedding_item_tower import EmbeddingItemTower


def test_embedding_item_tower_gives_unit_vectors_of_the_tower_dimension():
    tower = EmbeddingItemTower(n_categories=5, n_subcategories=9, text_dim=384, dim=64)
    out = tower(torch.tensor([0, 4, 2]), torch.tensor([8, 1, 0]), torch.randn(3, 384))
    assert out.shape == (3, 64)
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert tower.mlp[-1].out_features == 64  # recsys.retrieval.item_vectors reads it for empty catalogues


def _sample(cold: list[bool], oracle: list[bool] | None) -> ClickSample:
    return ClickSample(imps=np.arange(1), pools=[], pop_6h=[], clicks=[], cold=np.array(cold),
                       oracle_hits=None if oracle is None else np.array(oracle))


def test_recall_summary_splits_cold_and_warm_clicks_and_divides_by_the_oracle():
    sample = _sample(cold=[True, True, False, False], oracle=[True, True, True, False])
    r = recall_summary(np.array([True, False, True, False]), sample, "pop_")
    assert r["pop_recall_at_k"] == pytest.approx(0.5)
    assert r["pop_recall_vs_oracle"] == pytest.approx(0.5 / 0.75)
    assert r["pop_cold_recall_at_k"] == pytest.approx(0.5)
    assert r["pop_cold_recall_vs_oracle"] == pytest.approx(0.5)
    assert r["pop_warm_recall_at_k"] == pytest.approx(0.5)
    assert r["pop_warm_recall_vs_oracle"] == pytest.approx(1.0)


def test_recall_summary_without_truth_or_cold_clicks_reports_none():
    r = recall_summary(np.array([True, False]), _sample(cold=[False, False], oracle=None))
    assert r["recall_at_k"] == pytest.approx(0.5) and r["recall_vs_oracle"] is None
    assert r["cold_recall_at_k"] is None and r["cold_recall_vs_oracle"] is None


def test_paired_delta_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    a, b = rng.random(500) < 0.6, rng.random(500) < 0.5
    d = a.astype(float) - b.astype(float)
    out = paired_delta(a, b)
    assert out["delta"] == pytest.approx(d.mean())
    assert out["se"] == pytest.approx(np.std(d, ddof=1) / np.sqrt(500))
    assert paired_delta(np.array([], bool), np.array([], bool)) == {"delta": None, "se": None}


def test_unknown_encoder_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="bert_large"):
        compare_encoders(tmp_path / "no-such-world", EncoderCompareConfig(encoders=("hashed_bow", "bert_large")))
