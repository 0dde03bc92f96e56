"""The MIND schema, defined once: column names, id patterns, the time format and the record types.

Everything that reads or writes news.tsv / behaviors.tsv (the synthetic world, the MIND reader and writer,
training and serving) takes its words from here: `impression_id`, `user_id`, `news_id`, `history`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

NEWS_FILE = "news.tsv"
BEHAVIORS_FILE = "behaviors.tsv"
NEWS_META_FILE = "news_meta.tsv"  # newsrec's own side file: publish/expiry times (real MIND lacks it)

NEWS_COLUMNS = (
    "news_id", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities",
)
BEHAVIORS_COLUMNS = ("impression_id", "user_id", "time", "history", "impressions")
NEWS_META_COLUMNS = ("news_id", "publish_time", "expire_time")

# MIND ids: users "U<digits>", news "N<digits>", impressions are positive integers.
NEWS_ID_PATTERN = re.compile(r"^N\d{1,12}$")
USER_ID_PATTERN = re.compile(r"^U\d{1,12}$")
IMPRESSION_ID_PATTERN = re.compile(r"^\d{1,12}$")
# MIND time: "11/15/2019 8:55:22 AM": month, day and hour are not zero-padded.
TIME_PATTERN = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) (AM|PM)$")


def format_mind_time(t: datetime) -> str:
    """Format a naive datetime as MIND does: `%m/%d/%Y %I:%M:%S %p` with unpadded month, day and hour."""
    hour12 = t.hour % 12 or 12
    ampm = "AM" if t.hour < 12 else "PM"
    return f"{t.month}/{t.day}/{t.year} {hour12}:{t.minute:02d}:{t.second:02d} {ampm}"


def parse_mind_time(text: str) -> datetime:
    """Parse a MIND time string; raises ValueError naming the expected format."""
    m = TIME_PATTERN.match(text)
    if m is None:
        raise ValueError(f"time {text!r} is not in MIND format 'M/D/YYYY H:MM:SS AM|PM'")
    month, day, year, hour12, minute, second, ampm = m.groups()
    hour12 = int(hour12)
    if not 1 <= hour12 <= 12:
        raise ValueError(f"time {text!r}: hour {hour12} is outside 1..12")
    hour = hour12 % 12 + (12 if ampm == "PM" else 0)
    return datetime(int(year), int(month), int(day), hour, int(minute), int(second))


@dataclass(frozen=True)
class Entity:
    """One entry of MIND's title/abstract entity lists (a JSON object in news.tsv)."""

    label: str
    type: str
    wikidata_id: str
    confidence: float
    occurrence_offsets: tuple[int, ...]
    surface_forms: tuple[str, ...]

    def to_json(self) -> dict:
        return {
            "Label": self.label, "Type": self.type, "WikidataId": self.wikidata_id,
            "Confidence": self.confidence, "OccurrenceOffsets": list(self.occurrence_offsets),
            "SurfaceForms": list(self.surface_forms),
        }


@dataclass(frozen=True)
class NewsArticle:
    """One row of news.tsv. Title and abstract may contain quotes and any character but tab and newline."""

    news_id: str
    category: str
    subcategory: str
    title: str
    abstract: str
    url: str = ""
    title_entities: tuple[Entity, ...] = ()
    abstract_entities: tuple[Entity, ...] = ()


@dataclass(frozen=True)
class ImpressionItem:
    """One shown article of an impression; `clicked` is None in unlabelled (test split) files."""

    news_id: str
    clicked: bool | None


@dataclass(frozen=True)
class Behavior:
    """One row of behaviors.tsv: what `user_id` had clicked before `time` and what was shown then, in order."""

    impression_id: str
    user_id: str
    time: datetime
    history: tuple[str, ...] = ()
    impressions: tuple[ImpressionItem, ...] = field(default_factory=tuple)

    @property
    def labelled(self) -> bool:
        return all(item.clicked is not None for item in self.impressions)


@dataclass(frozen=True)
class NewsMeta:
    """When an article was published and when it stops being recommendable."""

    news_id: str
    publish_time: datetime
    expire_time: datetime


class MindFormatError(ValueError):
    """A MIND file that does not follow the format: names the file, the 1-based line and the column."""

    def __init__(self, path: str, line: int, column: str, reason: str):
        self.path, self.line, self.column, self.reason = str(path), line, column, reason
        super().__init__(f"{path}:{line}: column {column!r}: {reason}")
