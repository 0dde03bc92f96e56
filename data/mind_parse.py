"""Strict parsing of one MIND line into a record, raising MindFormatError(path, line, column, reason).

Shared by data/mind.py's record iterators and its fast tables, so both report a bad line the same way.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence

from data.schema import (
    NEWS_ID_PATTERN, USER_ID_PATTERN, Behavior, Entity, ImpressionItem, MindFormatError, NewsArticle, NewsMeta,
    parse_mind_time,
)

ROW = "<row>"  # the column named by errors about a whole line (column count, encoding)
POSITIVE_ID = re.compile(r"(?=\d*[1-9])\d{1,12}")  # schema.IMPRESSION_ID_PATTERN, and not all zeros
HISTORY_FIELD = re.compile(r"(?:N\d{1,12}(?: N\d{1,12})*)?")
IMPRESSIONS_FIELD = re.compile(r"N\d{1,12}-[01](?: N\d{1,12}-[01])*|N\d{1,12}(?: N\d{1,12})*")
_ITEM = re.compile(r"(N\d{1,12})(?:-([01]))?")
_ENTITY_TYPES = {"Label": str, "Type": str, "WikidataId": str, "Confidence": (int, float),
                 "OccurrenceOffsets": list, "SurfaceForms": list}


def entities_to_json(entities: Iterable[Entity]) -> str:
    """MIND's entity column text: a JSON list (json.dumps escapes tabs and newlines, so the text is one field)."""
    return json.dumps([e.to_json() for e in entities], ensure_ascii=False)


def parse_entities(text: str) -> tuple[Entity, ...]:
    """Parse an entity column; '' (as in some real MIND rows) is (). Raises ValueError saying what is wrong."""
    if text == "":
        return ()
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(items, list):
        raise ValueError(f"expected a JSON list of entities, found {type(items).__name__}")
    entities = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"entity {i} is not a JSON object")
        for key, kind in _ENTITY_TYPES.items():
            if key not in item:
                raise ValueError(f"entity {i} lacks key {key!r}")
            if not isinstance(item[key], kind) or isinstance(item[key], bool):
                raise ValueError(f"entity {i}: {key} has type {type(item[key]).__name__}")
        offsets, forms = item["OccurrenceOffsets"], item["SurfaceForms"]
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
            raise ValueError(f"entity {i}: OccurrenceOffsets must be a list of integers")
        if not all(isinstance(s, str) for s in forms):
            raise ValueError(f"entity {i}: SurfaceForms must be a list of strings")
        entities.append(Entity(item["Label"], item["Type"], item["WikidataId"], float(item["Confidence"]),
                               tuple(offsets), tuple(forms)))
    return tuple(entities)


def iter_fields(path: str | os.PathLike, columns: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, len(columns) fields) per line; splits on '\\n' only, drops one trailing '\\r'."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MindFormatError(path, line_no, ROW, f"not valid UTF-8 (byte {exc.start})") from None
            fields = line.removesuffix("\n").removesuffix("\r").split("\t")
            if len(fields) != len(columns):
                raise MindFormatError(path, line_no, ROW, f"expected {len(columns)} columns, found {len(fields)}")
            yield line_no, fields


def _need(pattern: re.Pattern[str], value: str, path, line: int, column: str, what: str) -> None:
    if not pattern.fullmatch(value):
        raise MindFormatError(path, line, column, f"{value!r} is not {what}")


def _time(text: str, path, line: int, column: str):
    try:
        return parse_mind_time(text)
    except ValueError as exc:  # also datetime()'s range errors: month 13, February 30
        raise MindFormatError(path, line, column, str(exc)) from None


def parse_news_fields(f: list[str], path, line: int) -> NewsArticle:
    """The 8 fields of a news.tsv line as a NewsArticle; ids, non-empty categories and entity JSON are checked."""
    _need(NEWS_ID_PATTERN, f[0], path, line, "news_id", "a news id (N<digits>)")
    for column, value in (("category", f[1]), ("subcategory", f[2])):
        if not value:
            raise MindFormatError(path, line, column, "is empty")
    entities = []
    for column, text in (("title_entities", f[6]), ("abstract_entities", f[7])):
        try:
            entities.append(parse_entities(text))
        except ValueError as exc:
            raise MindFormatError(path, line, column, str(exc)) from None
    return NewsArticle(*f[:6], *entities)


def parse_behavior_fields(f: list[str], path, line: int) -> Behavior:
    """The 5 fields of a behaviors.tsv line as a Behavior; its items are all labelled or all unlabelled."""
    _need(POSITIVE_ID, f[0], path, line, "impression_id", "a positive integer")
    _need(USER_ID_PATTERN, f[1], path, line, "user_id", "a user id (U<digits>)")
    time = _time(f[2], path, line, "time")
    history = tuple(f[3].split(" ")) if f[3] else ()
    for i, news_id in enumerate(history):
        _need(NEWS_ID_PATTERN, news_id, path, line, "history", f"a news id (N<digits>), at item {i}")
    if not f[4]:
        raise MindFormatError(path, line, "impressions", "is empty")
    items = []
    for i, text in enumerate(f[4].split(" ")):
        if (m := _ITEM.fullmatch(text)) is None:
            raise MindFormatError(path, line, "impressions", f"item {i} {text!r} is not N<digits>-1, -0 or bare")
        items.append(ImpressionItem(m[1], None if m[2] is None else m[2] == "1"))
    if len({item.clicked is None for item in items}) != 1:
        raise MindFormatError(path, line, "impressions", "mixes labelled (N1-1) and unlabelled (N1) items")
    return Behavior(f[0], f[1], time, history, tuple(items))


def parse_meta_fields(f: list[str], path, line: int) -> NewsMeta:
    """The 3 fields of a news_meta.tsv line as a NewsMeta; expire_time must not precede publish_time."""
    _need(NEWS_ID_PATTERN, f[0], path, line, "news_id", "a news id (N<digits>)")
    publish, expire = _time(f[1], path, line, "publish_time"), _time(f[2], path, line, "expire_time")
    if expire < publish:
        raise MindFormatError(path, line, "expire_time", f"{f[2]!r} is before publish_time {f[1]!r}")
    return NewsMeta(f[0], publish, expire)
