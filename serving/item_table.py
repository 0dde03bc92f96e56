"""Every article the service may meet (live pool and readers' histories): vector and labels by row, in process.

Per-request item features come from here, not from a per-request Redis MGET (measured: MGET of 500 items about
1.4 ms, a numpy gather about 0.08 ms). Copy-on-write like the index: readers take one consistent snapshot.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ItemTableSnapshot:
    row: dict[str, int]
    vectors: np.ndarray       # (A, D) float32
    subcategory: np.ndarray   # (A,) str
    category: np.ndarray
    publish_s: np.ndarray     # (A,) Unix seconds

    def rows(self, news_ids) -> np.ndarray:
        """Row per id, -1 for an unknown one."""
        return np.array([self.row.get(n, -1) for n in news_ids], dtype=np.int64)

    def labels(self, rows: np.ndarray, level: str) -> np.ndarray:
        """Labels at `level` ("subcategory" | "category") for rows; "" where the row is -1."""
        values = self.subcategory if level == "subcategory" else self.category
        return np.where(rows >= 0, values[np.maximum(rows, 0)], "")


class ItemTable:
    def __init__(self, dim: int):
        self.dim = dim
        self._write = threading.Lock()
        self._snap = ItemTableSnapshot({}, np.zeros((0, dim), np.float32), np.array([], dtype=object),
                                       np.array([], dtype=object), np.zeros(0))

    @property
    def snapshot(self) -> ItemTableSnapshot:
        return self._snap

    def upsert(self, news_ids, vectors: np.ndarray, subcategory, category, publish_s) -> None:
        news_ids = list(news_ids)
        vectors = np.asarray(vectors, np.float32)
        if vectors.shape != (len(news_ids), self.dim):
            raise ValueError(f"vectors shape {vectors.shape}, expected ({len(news_ids)}, {self.dim})")
        with self._write:
            s = self._snap
            keep = np.array([n not in set(news_ids) for n in s.row], dtype=bool) if s.row else np.zeros(0, bool)
            old_ids = np.array(list(s.row), dtype=object)[keep] if s.row else np.array([], dtype=object)
            ids = np.concatenate([old_ids, np.array(news_ids, dtype=object)])
            self._snap = ItemTableSnapshot(
                {n: i for i, n in enumerate(ids)}, np.concatenate([s.vectors[keep], vectors]),
                np.concatenate([s.subcategory[keep], np.asarray(subcategory, dtype=object)]),
                np.concatenate([s.category[keep], np.asarray(category, dtype=object)]),
                np.concatenate([s.publish_s[keep], np.asarray(publish_s, np.float64)]))
