"""Who reads during a load test: user ids drawn from a MIND world's behaviors.tsv with its activity skew (weight =
impressions per user), plus a share of unknown readers (valid ids no world uses: the cold-start path)."""
from __future__ import annotations

import bisect
import random
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from data.schema import BEHAVIORS_FILE, USER_ID_PATTERN

UNKNOWN_BASE = 9_999_000_000  # U9999000000..: far above any synthetic or MIND user id


@dataclass(frozen=True)
class Readers:
    user_ids: tuple[str, ...]
    cum_weights: tuple[float, ...]
    unknown_share: float = 0.05

    def draw(self, rng: random.Random) -> str:
        """One reader: a known one with probability proportional to activity, else an unknown id."""
        if rng.random() < self.unknown_share or not self.user_ids:
            return f"U{UNKNOWN_BASE + rng.randrange(1_000_000)}"
        at = bisect.bisect_right(self.cum_weights, rng.random() * self.cum_weights[-1])
        return self.user_ids[min(at, len(self.user_ids) - 1)]


def count_impressions(world: Path) -> Counter[str]:
    """Impressions per user over every behaviors.tsv under `world` (train and dev, or a bare MIND split)."""
    files = sorted(world.glob(f"*/{BEHAVIORS_FILE}")) or sorted(world.glob(BEHAVIORS_FILE))
    if not files:
        raise FileNotFoundError(f"no {BEHAVIORS_FILE} under {world} (expected {world}/train/{BEHAVIORS_FILE})")
    counts: Counter[str] = Counter()
    for path in files:
        with path.open(encoding="utf-8") as f:
            counts.update(line.split("\t", 2)[1] for line in f if line.strip())
    return counts


def write_readers(world: Path, out: Path) -> int:
    """Write `user_id<TAB>impressions` lines (heaviest first); returns the number of readers."""
    counts = count_impressions(world)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{u}\t{n}\n" for u, n in counts.most_common()), encoding="utf-8")
    return len(counts)


def load_readers(source: Path, unknown_share: float = 0.05) -> Readers:
    """Readers from a world directory or from a file written by `write_readers` (`user_id[<TAB>weight]` lines)."""
    if not 0.0 <= unknown_share <= 1.0:
        raise ValueError(f"unknown_share must be in [0, 1], got {unknown_share}")
    if source.is_dir():
        pairs = count_impressions(source).most_common()
    else:
        pairs = []
        for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            user, _, weight = line.partition("\t")
            pairs.append((user.strip(), float(weight) if weight.strip() else 1.0))
            if not USER_ID_PATTERN.match(pairs[-1][0]) or pairs[-1][1] <= 0:
                raise ValueError(f"{source}:{n}: expected 'U<digits>[<TAB>positive weight]', got {line!r}")
    if not pairs:
        raise ValueError(f"no readers in {source}")
    users, weights = zip(*pairs)
    return Readers(tuple(users), tuple(accumulate(float(w) for w in weights)), unknown_share)
