"""The item towers the encoder comparison trains: our hashed bag of words (trained end to end), frozen MiniLM
sentence vectors + a trained projection, and no text at all (what category + subcategory alone give)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recsys.dataset import Dataset
from recsys.features import FeatureSpec
from recsys.models.embedding_item_tower import EmbeddingItemTower
from recsys.models.item_tower import ItemTower

ENCODERS = ("hashed_bow", "minilm", "no_text")


@dataclass
class ItemVariant:
    """One item tower to train: a fresh tower, its inputs for every article, and the cost of encoding from text."""

    name: str
    description: str
    make_tower: Callable[[], nn.Module]
    inputs: dict[str, np.ndarray]                     # one row per article, the tower's forward kwargs
    encode: Callable[[np.ndarray], dict[str, np.ndarray]]  # article rows -> inputs, built from the raw text
    frozen_parameters: int = 0
    frozen_bytes: int = 0
    text_seconds: float = 0.0                          # one pass of a frozen encoder over every article


def _labels(ds: Dataset, spec: FeatureSpec, rows: np.ndarray) -> dict[str, np.ndarray]:
    inputs = ds.articles.model_inputs(spec, rows)
    return {"category": inputs["category"], "subcategory": inputs["subcategory"]}


def hashed_bow(ds: Dataset, spec: FeatureSpec) -> ItemVariant:
    return ItemVariant(
        "hashed_bow", f"hashed bag of words ({spec.token_buckets} buckets, {spec.max_tokens} words), trained",
        lambda: ItemTower(len(spec.categories), len(spec.subcategories), spec.token_buckets, spec.embedding_dim),
        ds.articles.model_inputs(spec), lambda rows: ds.articles.model_inputs(spec, rows))


def no_text(ds: Dataset, spec: FeatureSpec) -> ItemVariant:
    """ItemTower with one word bucket (padding) and every word slot padding: its text part is the zero vector."""
    def blank(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**inputs, "tokens": np.zeros((len(inputs["category"]), 1), np.int64)}

    return ItemVariant(
        "no_text", "category + subcategory only (ablation)",
        lambda: ItemTower(len(spec.categories), len(spec.subcategories), 1, spec.embedding_dim),
        blank(_labels(ds, spec, np.arange(len(ds.articles.news_ids)))),
        lambda rows: blank(_labels(ds, spec, rows)))


def minilm(ds: Dataset, spec: FeatureSpec, batch_size: int = 64) -> ItemVariant:
    """Frozen all-MiniLM-L6-v2 over title + abstract, computed once for every article and kept in memory."""
    from recsys.text_minilm import MODEL_NAME, MiniLMEncoder

    encoder = MiniLMEncoder()
    t0 = time.perf_counter()
    emb = encoder.encode(ds.articles.text, batch_size)
    seconds = time.perf_counter() - t0
    rows = np.arange(len(ds.articles.news_ids))
    return ItemVariant(
        "minilm", f"frozen {MODEL_NAME} ({encoder.dim}-d) + trained projection",
        lambda: EmbeddingItemTower(len(spec.categories), len(spec.subcategories), encoder.dim,
                                   spec.embedding_dim),
        {**_labels(ds, spec, rows), "text_emb": emb},
        lambda rows: {**_labels(ds, spec, rows), "text_emb": encoder.encode([ds.articles.text[i] for i in rows])},
        frozen_parameters=encoder.n_parameters, frozen_bytes=encoder.size_bytes, text_seconds=seconds)


def build_variant(name: str, ds: Dataset, spec: FeatureSpec) -> ItemVariant:
    builders = {"hashed_bow": hashed_bow, "minilm": minilm, "no_text": no_text}
    if name not in builders:
        raise ValueError(f"unknown encoder {name!r}: choose from {', '.join(ENCODERS)}")
    return builders[name](ds, spec)


def encode_costs(arms: dict[str, tuple[ItemVariant, nn.Module]], n_articles: int, n_single: int,
                 n_batch: int, repeats: int = 3, seed: int = 0) -> dict[str, dict[str, float]]:
    """CPU ms per article, raw text to unit vector, on 1 thread: one article at a time (the article ingestor's
    case; median over n_single articles) and n_batch articles in one call (median of `repeats`).

    The encoders take turns article by article (and batch by batch), so a busy shared CPU slows all of them alike.
    """
    rng = np.random.default_rng(seed)
    single_rows = rng.choice(n_articles, min(n_single, n_articles), replace=False)
    batch_rows = rng.choice(n_articles, min(n_batch, n_articles), replace=False)
    times: dict[str, dict[str, list[float]]] = {name: {"single": [], "batch": []} for name in arms}

    def timed(variant: ItemVariant, tower: nn.Module, rows: np.ndarray) -> float:
        t0 = time.perf_counter()
        tower(**{k: torch.from_numpy(v) for k, v in variant.encode(rows).items()})
        return time.perf_counter() - t0

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads per batch-1 call stall for ~10x on a shared 2-core box (measured)
    try:
        with torch.no_grad():
            for _, tower in arms.values():
                tower.eval()
            for i in single_rows:
                for name, (variant, tower) in arms.items():
                    times[name]["single"].append(timed(variant, tower, np.array([i])))
            for _ in range(repeats):
                for name, (variant, tower) in arms.items():
                    times[name]["batch"].append(timed(variant, tower, batch_rows) / batch_rows.size)
    finally:
        torch.set_num_threads(threads)
    return {name: {"encode_ms_per_article_batch1": 1e3 * statistics.median(t["single"]),
                   "encode_ms_per_article_batched": 1e3 * statistics.median(t["batch"])}
            for name, t in times.items()}


def tower_size(variant: ItemVariant, tower: nn.Module) -> dict[str, float]:
    trainable = sum(p.numel() for p in tower.parameters())
    return {"trainable_parameters": trainable, "frozen_parameters": variant.frozen_parameters,
            "model_mb": (4 * trainable + variant.frozen_bytes) / 1e6}
