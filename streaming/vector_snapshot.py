"""`item-vectors` folded to the latest vector per article, with the offsets it covers, and its snapshot file.

A serving replica rebuilds on start from the snapshot (if one exists) and then reads the topic from the snapshot's
offsets; the article worker writes the snapshot. The file is one .npz (no pickle): float32 vectors plus UTF-8 JSON
metadata (topic, offsets, each article's event and model version), replaced atomically.
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streaming.events import ArticleEvent, ItemVectorEvent

log = logging.getLogger("newsrec.snapshot")
FORMAT = 1
KEEP_EXPIRED_S = 7 * 86_400   # readers' histories still need an expired article's vector (as the store's item TTL)


@dataclass(frozen=True)
class FoldedVector:
    article: ArticleEvent
    vector: np.ndarray        # (D,) float32, from `model_version`'s item tower
    model_version: str

    @classmethod
    def of(cls, event: ItemVectorEvent) -> FoldedVector:
        return cls(event.article, np.asarray(event.vector, np.float32), event.model_version)


class VectorFold:
    """The latest vector per news id, in stream order (records of one article share a partition: key = news id),
    and, per partition, the next offset to read. Not thread-safe: one owner."""

    def __init__(self, topic: str):
        self.topic = topic
        self.items: dict[str, FoldedVector] = {}
        self.offsets: dict[int, int] = {}
        self.changed = False

    def apply(self, items: Iterable[FoldedVector]) -> None:
        for item in items:
            self.items[item.article.news_id] = item
            self.changed = True

    def advance(self, partition: int, offset: int) -> None:
        """Record that everything before `offset` in `partition` is folded in."""
        self.offsets[partition] = max(offset, self.offsets.get(partition, 0))

    def prune(self, now_s: float, keep_expired_s: float = KEEP_EXPIRED_S) -> int:
        """Forget articles that expired more than keep_expired_s ago; returns how many."""
        gone = [n for n, i in self.items.items() if i.article.expire_s + keep_expired_s <= now_s]
        for n in gone:
            del self.items[n]
        self.changed |= bool(gone)
        return len(gone)

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename): a reader sees the old snapshot or the new one, never half."""
        items = list(self.items.values())
        meta = {"format": FORMAT, "topic": self.topic, "offsets": {str(p): o for p, o in self.offsets.items()},
                "items": [{"article": i.article.model_dump(), "model_version": i.model_version,
                           "dim": int(i.vector.size)} for i in items]}
        flat = np.concatenate([i.vector for i in items]) if items else np.zeros(0, np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            np.savez(f, vectors=flat.astype(np.float32), meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self.changed = False

    @classmethod
    def load(cls, path: Path, topic: str) -> VectorFold | None:
        """The snapshot at `path`, or None if there is none, it is of another topic, or it cannot be read (then the
        topic is read from the beginning instead: slower, same result)."""
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                meta, flat = json.loads(z["meta"].tobytes()), z["vectors"]
            if meta.get("format") != FORMAT or meta.get("topic") != topic:
                log.warning("snapshot %s is of format %s / topic %r, not %r: ignored", path, meta.get("format"),
                            meta.get("topic"), topic)
                return None
            fold, at = cls(topic), 0
            for m in meta["items"]:
                vec = flat[at:at + m["dim"]]
                at += m["dim"]
                fold.items[m["article"]["news_id"]] = FoldedVector(ArticleEvent.model_validate(m["article"]), vec,
                                                                   m["model_version"])
            if at != flat.size:
                raise ValueError(f"{flat.size} floats for {at} declared")
            fold.offsets = {int(p): int(o) for p, o in meta["offsets"].items()}
            return fold
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            log.error("snapshot %s unreadable, reading the topic from the beginning: %s", path, exc)
            return None
