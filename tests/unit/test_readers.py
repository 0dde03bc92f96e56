"""Load-test readers: drawn with the world's activity skew, a share of valid unknown ids, from a world directory or
a readers file; a malformed file is refused with its line number."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from data.schema import USER_ID_PATTERN
from loadtest.readers import count_impressions, load_readers, write_readers


@pytest.fixture
def world(tmp_path):
    rows = ["1\tU1\tt\t\tN1-0"] * 6 + ["2\tU2\tt\t\tN1-0"] * 3 + ["3\tU3\tt\t\tN1-1"]
    for split, part in (("train", rows[:7]), ("dev", rows[7:])):
        (tmp_path / split).mkdir()
        (tmp_path / split / "behaviors.tsv").write_text("\n".join(part) + "\n")
    return tmp_path


def test_readers_follow_the_activity_skew_plus_unknown_readers(world):
    assert count_impressions(world) == {"U1": 6, "U2": 3, "U3": 1}
    readers = load_readers(world, unknown_share=0.1)
    rng = random.Random(0)
    drawn = Counter(readers.draw(rng) for _ in range(20_000))
    unknown = {u: n for u, n in drawn.items() if u not in ("U1", "U2", "U3")}
    assert all(USER_ID_PATTERN.match(u) for u in drawn)
    assert sum(unknown.values()) / 20_000 == pytest.approx(0.1, abs=0.01)
    known = 20_000 - sum(unknown.values())
    assert drawn["U1"] / known == pytest.approx(0.6, abs=0.02) and drawn["U3"] / known == pytest.approx(0.1, abs=0.02)


def test_a_readers_file_round_trips_and_a_bad_line_is_refused(world, tmp_path):
    path = tmp_path / "readers.tsv"
    assert write_readers(world, path) == 3
    assert path.read_text().splitlines()[0] == "U1\t6"
    readers = load_readers(path, unknown_share=0.0)
    assert readers.user_ids == ("U1", "U2", "U3") and readers.cum_weights == (6.0, 9.0, 10.0)
    path.write_text("U1\t2\nuser-7\t1\n")
    with pytest.raises(ValueError, match="readers.tsv:2"):
        load_readers(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        load_readers(tmp_path / "empty")  # a directory without behaviors.tsv under it
    with pytest.raises(ValueError):
        load_readers(world, unknown_share=1.5)
