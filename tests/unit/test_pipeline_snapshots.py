"""A request holds one item-table snapshot while the stream adds articles (table first, then index): index rows that
point past that snapshot's end read as unknown for that request instead of failing it."""
from __future__ import annotations

import numpy as np

from serving.index import LiveIndex
from recsys.item_table import ItemTable
from serving.pipeline import _table_rows


def _add(items: ItemTable, index: LiveIndex, ids: list[str], rng: np.random.Generator) -> None:
    vecs = rng.normal(size=(len(ids), 4)).astype(np.float32)
    items.upsert(ids, vecs, ["sub"] * len(ids), ["news"] * len(ids), np.zeros(len(ids)))
    index.upsert(ids, vecs, np.zeros(len(ids)), np.full(len(ids), 1e12))


def test_index_rows_newer_than_the_request_table_snapshot_read_as_unknown():
    rng = np.random.default_rng(0)
    items = ItemTable(4)
    index = LiveIndex(4, items=items)
    _add(items, index, ["N1", "N2"], rng)
    held = items.snapshot                     # the request's table snapshot ...
    _add(items, index, ["N3"], rng)           # ... then the stream adds an article to the table and the index
    s = index.snapshot
    rows, cats = _table_rows(s, np.arange(s.size), held)
    by_id = dict(zip(s.news_ids.tolist(), rows.tolist()))
    assert by_id["N3"] == -1 and by_id["N1"] >= 0 and by_id["N2"] >= 0
    assert cats[s.news_ids.tolist().index("N3")] == -1
    rows_now, _ = _table_rows(s, np.arange(s.size), items.snapshot)  # a later request sees it
    assert (rows_now >= 0).all()
