"""Article text to model inputs: a hashed bag of words, identical in training, serving and the stream ingestor.

Hashing (crc32) needs no vocabulary file, so a word first seen in a story published a second ago still maps to a
trained bucket's neighbourhood of meaning only if seen before; unseen words fall into shared buckets harmlessly.
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return WORD.findall(text.lower())


def hash_tokens(texts: Sequence[str], buckets: int, max_len: int) -> np.ndarray:
    """(n, max_len) int64 bucket ids in 1..buckets-1, 0 = padding; words beyond max_len are dropped."""
    out = np.zeros((len(texts), max_len), dtype=np.int64)
    for i, text in enumerate(texts):
        ids = [zlib.crc32(w.encode()) % (buckets - 1) + 1 for w in tokenize(text)[:max_len]]
        out[i, :len(ids)] = ids
    return out
