"""The in-process item table: rows never move (other structures keep them), topic codes match the labels, and the
live index resolves table rows once at write time."""
from __future__ import annotations

import numpy as np

from serving.index import LiveIndex
from recsys.item_table import ItemTable

D = 4


def _vecs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


def test_rows_are_stable_across_upserts_and_codes_match_labels():
    table = ItemTable(D)
    table.upsert(["N1", "N2", "N3"], _vecs(3), ["s1", "s2", "s1"], ["c1", "c2", "c1"], [1.0, 2.0, 3.0])
    before = table.snapshot
    new_vec = _vecs(2, seed=1)
    table.upsert(["N2", "N4"], new_vec, ["s3", "s1"], ["c3", "c1"], [5.0, 6.0])
    s = table.snapshot
    assert list(s.rows(["N1", "N2", "N3", "N4", "nope"])) == [0, 1, 2, 3, -1]
    np.testing.assert_array_equal(s.vectors[[1, 3]], new_vec)  # N2 rewritten in place, N4 appended
    np.testing.assert_array_equal(s.vectors[[0, 2]], before.vectors[[0, 2]])
    assert list(before.rows(["N2", "N4"])) == [1, -1] and before.subcategory[1] == "s2"  # the old snapshot is intact
    rows = s.rows(["N1", "N2", "N3", "N4", "nope"])
    for level in ("subcategory", "category"):
        labels, codes = s.labels(rows, level), s.topic_codes(rows, level)
        names = {code: name for name, code in s.vocab[level].items()}
        assert [names.get(int(c), "") for c in codes] == list(labels)
    assert s.topic_codes(rows, "category")[-1] == -1


def test_the_index_keeps_table_rows_of_its_articles():
    table = ItemTable(D)
    table.upsert(["N1", "N2"], _vecs(2), ["s", "s"], ["c", "c"], [0.0, 0.0])
    index = LiveIndex(D, items=table)
    index.upsert(["N2", "N1"], _vecs(2), [0.0, 0.0], [10.0, 10.0])
    table.upsert(["N3"], _vecs(1), ["s"], ["c"], [0.0])
    index.upsert(["N3"], _vecs(1), [0.0], [10.0])
    index.remove(["N2"])
    s = index.snapshot
    assert dict(zip(s.news_ids, s.item_rows)) == {"N1": 0, "N3": 2}
    assert (LiveIndex(D).snapshot.item_rows.size == 0)
