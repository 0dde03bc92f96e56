"""The `small` demo world end to end: synthesized by the CLI, validated, parsed by an independent strict reader,
and learnable (the oracle leaves room above popularity)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NEWSREC = [sys.executable, "-m", "newsrec.cli"]


@pytest.fixture(scope="module")
def small_world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small")
    subprocess.run([*NEWSREC, "data", "synth", "--preset", "small", "--out", str(out)], check=True)
    return out


def strict_mind_check(directory: Path) -> tuple[int, int]:
    """A MIND reader written from the dataset's description alone, sharing no code with data.mind."""
    time_re = re.compile(r"(1[0-2]|[1-9])/([1-9]|[12]\d|3[01])/\d{4} (1[0-2]|[1-9]):[0-5]\d:[0-5]\d [AP]M")
    news_ids = set()
    for line in (directory / "news.tsv").read_text(encoding="utf-8").split("\n")[:-1]:
        cols = line.split("\t")
        assert len(cols) == 8, line
        assert re.fullmatch(r"N\d+", cols[0]) and cols[1] and cols[2] and cols[3]
        for entities in cols[6:8]:
            assert isinstance(json.loads(entities or "[]"), list)
        news_ids.add(cols[0])
    n_behaviors = 0
    for line in (directory / "behaviors.tsv").read_text(encoding="utf-8").split("\n")[:-1]:
        imp_id, user, time, history, impressions = line.split("\t")
        assert imp_id.isdigit() and re.fullmatch(r"U\d+", user) and time_re.fullmatch(time), line
        assert all(h in news_ids for h in history.split())
        for item in impressions.split(" "):
            nid, label = item.rsplit("-", 1)
            assert nid in news_ids and label in ("0", "1")
        n_behaviors += 1
    return len(news_ids), n_behaviors


def test_small_world_validates_and_parses_strictly(small_world):
    result = subprocess.run([*NEWSREC, "data", "validate", str(small_world)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    total = 0
    for split in ("train", "dev"):
        n_news, n_behaviors = strict_mind_check(small_world / split)
        assert n_news > 5_000 and n_behaviors > 10_000
        total += n_behaviors
    assert total == 150_000


def test_small_world_is_learnable(small_world):
    result = subprocess.run([*NEWSREC, "data", "learnability", "--json", str(small_world)],
                            capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    print(report)
    assert report["oracle_auc"] - report["popularity_auc"] >= 0.10
    assert report["content_history_auc"] > 0.55  # content + history alone predicts interest
