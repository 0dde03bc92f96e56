"""`newsrec bench encoders` end to end on the tiny world: the real all-MiniLM-L6-v2 loads offline, both encoders
train and are measured, the report has the documented shape, metrics are in range and the towers beat chance."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from recsys.encoder_compare import EncoderCompareConfig, compare_encoders

pytestmark = pytest.mark.slow
K = 50  # the tiny world's live pool is ~300 articles: K = 200 would make even a random ranking look good


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from data.synth import preset, write_world

    world = tmp_path_factory.mktemp("encoders") / "world"
    write_world(preset("tiny"), world)
    return world


def test_minilm_is_the_real_pre_trained_model_loaded_offline():
    from recsys.text_minilm import MiniLMEncoder

    enc = MiniLMEncoder()
    e = enc.encode(["This is an example sentence", "A man is eating food.", "A man is eating a piece of bread.",
                    "The girl is carrying a baby."])
    assert e.shape == (4, 384) and np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    # first values of all-MiniLM-L6-v2's embedding of this sentence (the model card's example): random or
    # differently pooled weights would not give them
    assert np.allclose(e[0, :5], [0.0677, 0.0635, 0.0487, 0.0793, 0.0374], atol=2e-3)
    assert e[1] @ e[2] > 0.6 > 0.1 > e[1] @ e[3]  # paraphrases close, unrelated sentences not
    assert enc.n_parameters == pytest.approx(22.7e6, rel=0.01)


def test_compare_encoders_reports_every_encoder_with_metrics_in_range(tiny_world):
    cfg = EncoderCompareConfig(encoders=("hashed_bow", "minilm"), recall_k=K, impressions=150, cost_articles=5,
                               cost_batch=32)
    cfg = replace(cfg, retrieval=replace(cfg.retrieval, epochs=1))
    report = compare_encoders(tiny_world, cfg)
    json.dumps(report, allow_nan=False)  # the file the CLI writes is strict JSON
    assert [r["encoder"] for r in report["encoders"]] == ["hashed_bow", "minilm"]
    assert report["k"] == K and report["impressions"] == 150
    assert 0 < report["cold_clicks"] < report["clicks"]
    assert 0.9 < report["oracle"]["recall_vs_oracle"] <= 1.0 + 1e-9
    assert 0.1 < report["chance_recall_at_k"] < 0.3  # K / pool size: the tiny world's pool is ~300 articles
    for r in report["encoders"]:
        for key in ("recall_at_k", "cold_recall_at_k", "warm_recall_at_k", "pop_recall_at_k"):
            assert 0.0 <= r[key] <= 1.0, (r["encoder"], key)
        # one epoch is 10 steps here, yet both towers must beat chance clearly
        assert r["recall_at_k"] > 1.5 * report["chance_recall_at_k"], r["encoder"]
        assert 0 < r["recall_vs_oracle"] < 1.5
        assert r["encode_ms_per_article_batch1"] > 0 and r["encode_ms_per_article_batched"] > 0
        assert r["train_seconds"] > 0 and len(r["train_loss"]) == 1 and math.isfinite(r["train_loss"][0])
        assert r["trainable_parameters"] > 0 and r["model_mb"] > 0
    hashed, mini = report["encoders"]
    assert mini["frozen_parameters"] > 20e6 and mini["model_mb"] > 80 and mini["text_precompute_seconds"] > 0
    assert hashed["frozen_parameters"] == 0 and hashed["model_mb"] < 10
    # a transformer pass per article costs far more than hashing its words
    assert mini["encode_ms_per_article_batch1"] > 5 * hashed["encode_ms_per_article_batch1"]
    for part in ("recall", "cold_recall", "pop_recall"):
        d = mini["vs_hashed_bow"][part]
        assert -1.0 <= d["delta"] <= 1.0 and d["se"] >= 0


def test_cli_refuses_an_unknown_encoder_with_a_clear_message(tiny_world, tmp_path):
    result = subprocess.run([sys.executable, "-m", "newsrec.cli", "bench", "encoders", "--world", str(tiny_world),
                             "--out", str(tmp_path), "--encoders", "hashed_bow,word2vec"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "word2vec" in result.stderr and "choose from" in result.stderr
    assert not (tmp_path / "bench_encoders.json").exists()
