"""MIND file I/O: writers, strict record iterators and fast pandas tables for news.tsv, behaviors.tsv, news_meta.tsv.

The data stage's edge: the synthetic world writes through here, training reads the tables, data/validate.py the records.
"""
from __future__ import annotations

import csv
import io
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd

from data.mind_parse import (
    HISTORY_FIELD, IMPRESSIONS_FIELD, POSITIVE_ID, ROW, entities_to_json, iter_fields, parse_behavior_fields,
    parse_entities, parse_meta_fields, parse_news_fields,
)
from data.schema import (
    BEHAVIORS_COLUMNS, NEWS_COLUMNS, NEWS_ID_PATTERN, NEWS_META_COLUMNS, TIME_PATTERN, USER_ID_PATTERN, Behavior,
    MindFormatError, NewsArticle, NewsMeta, format_mind_time,
)

__all__ = [
    "entities_to_json", "parse_entities", "news_to_row", "behavior_to_row", "meta_to_row",
    "write_news", "write_behaviors", "write_news_meta", "write_news_rows", "write_behaviors_rows",
    "iter_news", "iter_behaviors", "iter_news_meta",
    "read_news_table", "read_behaviors_table", "read_news_meta_table", "explode_impressions",
]

_LINE_BREAK_OR_TAB = re.compile(r"[\t\n\r]")
_STRPTIME = "%m/%d/%Y %I:%M:%S %p"  # strptime also takes 1-digit minutes; TIME_PATTERN rules those out
_CHUNK_ROWS = 65_536

# ---- writers ----------------------------------------------------------------------------------------------------


def _text(name: str, value: str, owner: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} of {owner} must be str, got {type(value).__name__}")
    if _LINE_BREAK_OR_TAB.search(value):
        raise ValueError(f"{name} of {owner} contains a tab or line break: {value!r}")
    return value


def _id(name: str, value: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{name} {value!r} does not match {pattern.pattern}")
    return value


def news_to_row(a: NewsArticle) -> tuple[str, ...]:
    """The 8 column strings of one news.tsv line; raises ValueError naming a bad field."""
    _id("news_id", a.news_id, NEWS_ID_PATTERN)
    texts = [_text(name, getattr(a, name), a.news_id) for name in NEWS_COLUMNS[1:6]]
    if not a.category or not a.subcategory:
        raise ValueError(f"category and subcategory of {a.news_id} must not be empty")
    return (a.news_id, *texts, entities_to_json(a.title_entities), entities_to_json(a.abstract_entities))


def behavior_to_row(b: Behavior) -> tuple[str, ...]:
    """The 5 column strings of one behaviors.tsv line; all items labelled (N1-0/N1-1) or all unlabelled (N1)."""
    _id("impression_id", b.impression_id, POSITIVE_ID)
    _id("user_id", b.user_id, USER_ID_PATTERN)
    history = " ".join(_id("history item", n, NEWS_ID_PATTERN) for n in b.history)
    if not b.impressions or len({item.clicked is None for item in b.impressions}) != 1:
        raise ValueError(f"impressions of {b.impression_id} must be non-empty and all labelled or all unlabelled")
    items = " ".join(_id("impressions item", i.news_id, NEWS_ID_PATTERN)
                     + ("" if i.clicked is None else f"-{int(i.clicked)}") for i in b.impressions)
    return (b.impression_id, b.user_id, format_mind_time(b.time), history, items)


def meta_to_row(m: NewsMeta) -> tuple[str, ...]:
    """The 3 column strings of one news_meta.tsv line; expire_time must not precede publish_time."""
    _id("news_id", m.news_id, NEWS_ID_PATTERN)
    if m.expire_time < m.publish_time:
        raise ValueError(f"expire_time of {m.news_id} is before its publish_time")
    return (m.news_id, format_mind_time(m.publish_time), format_mind_time(m.expire_time))


def _write_rows(path: str | os.PathLike, rows: Iterable[Sequence[str]], columns: Sequence[str]) -> int:
    """Write rows of formatted column strings, '\\n'-terminated; returns the row count.

    Checks cost a few C-level scans per 64k-row chunk (row lengths, tab and line-break counts of the joined chunk);
    only a failing chunk is searched row by row. Writes to a temporary file and renames it, so a failed write
    leaves no half file.
    """
    path, n, width = Path(path), 0, len(columns)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            it = iter(rows)
            while chunk := list(islice(it, _CHUNK_ROWS)):
                text = "\n".join(["\t".join(row) for row in chunk])
                if (set(map(len, chunk)) != {width} or text.count("\t") != (width - 1) * len(chunk)
                        or text.count("\n") != len(chunk) - 1 or "\r" in text):
                    _raise_bad_row(chunk, n, columns)
                f.write(text + "\n")
                n += len(chunk)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _raise_bad_row(chunk: list[Sequence[str]], offset: int, columns: Sequence[str]) -> None:
    for i, row in enumerate(chunk, offset):
        if len(row) != len(columns):
            raise ValueError(f"row {i}: expected {len(columns)} columns, found {len(row)}")
        for name, value in zip(columns, row):
            _text(name, value, f"row {i}")


def write_news(path: str | os.PathLike, articles: Iterable[NewsArticle]) -> int:
    """Write news.tsv; returns the row count. Raises ValueError on a bad id or a tab/line break in a field."""
    return _write_rows(path, map(news_to_row, articles), NEWS_COLUMNS)


def write_behaviors(path: str | os.PathLike, behaviors: Iterable[Behavior]) -> int:
    """Write behaviors.tsv; returns the row count. Raises ValueError on a bad id or mixed labelled items."""
    return _write_rows(path, map(behavior_to_row, behaviors), BEHAVIORS_COLUMNS)


def write_news_meta(path: str | os.PathLike, metas: Iterable[NewsMeta]) -> int:
    """Write news_meta.tsv; returns the row count."""
    return _write_rows(path, map(meta_to_row, metas), NEWS_META_COLUMNS)


def write_news_rows(path: str | os.PathLike, rows: Iterable[Sequence[str]]) -> int:
    """Bulk writer: rows of 8 formatted strings; only column count, tabs and line breaks are checked."""
    return _write_rows(path, rows, NEWS_COLUMNS)


def write_behaviors_rows(path: str | os.PathLike, rows: Iterable[Sequence[str]]) -> int:
    """Bulk writer for ~1M rows: (impression_id, user_id, time_text, history_text, impressions_text) strings,
    checked only for column count, tabs and line breaks (ids and times are the caller's; `validate_dir` checks them)."""
    return _write_rows(path, rows, BEHAVIORS_COLUMNS)

# ---- strict record iterators ------------------------------------------------------------------------------------


def _iter_records(path, columns: Sequence[str], parse: Callable, key: str) -> Iterator:
    """Parsed records in file order; a repeated `key` (the file's unique column) raises at its second line."""
    seen: dict[str, int] = {}
    for line, fields in iter_fields(path, columns):
        record = parse(fields, path, line)
        if (first := seen.setdefault(fields[0], line)) != line:
            raise MindFormatError(path, line, key, f"duplicate {key} {fields[0]!r} (first on line {first})")
        yield record


def iter_news(path: str | os.PathLike) -> Iterator[NewsArticle]:
    """news.tsv's articles in file order; news_id is unique. Raises MindFormatError at the first bad line."""
    return _iter_records(path, NEWS_COLUMNS, parse_news_fields, "news_id")


def iter_behaviors(path: str | os.PathLike) -> Iterator[Behavior]:
    """behaviors.tsv's rows in file order; impression_id is unique. Raises MindFormatError at the first bad line."""
    return _iter_records(path, BEHAVIORS_COLUMNS, parse_behavior_fields, "impression_id")


def iter_news_meta(path: str | os.PathLike) -> Iterator[NewsMeta]:
    """news_meta.tsv's rows in file order; news_id is unique. Raises MindFormatError at the first bad line."""
    return _iter_records(path, NEWS_META_COLUMNS, parse_meta_fields, "news_id")

# ---- fast tables --------------------------------------------------------------------------------------------------


def _read_tsv(path, columns: Sequence[str], strict: Callable[[], Iterable]) -> pd.DataFrame:
    """Every column as str, row i from line i + 1, with the iterators' splitting ('\\n' only, no quoting).

    When pandas' reading disagrees with the line splitter, `strict` (the file's record iterator) is run to
    raise the first error of the file, which may lie on an earlier line than the bad column count.
    """
    data = Path(path).read_bytes()
    if not data:
        return pd.DataFrame({c: pd.Series([], dtype=str) for c in columns})
    df, error = None, "a short row"
    try:
        with warnings.catch_warnings():  # too many fields on line 1 is only a ParserWarning
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(io.BytesIO(data), sep="\t", header=None, names=list(columns), dtype=str, engine="c",
                             quoting=csv.QUOTE_NONE, na_filter=False, skip_blank_lines=False, lineterminator="\n",
                             index_col=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError) as exc:
        error = str(exc)
    # pandas pads short rows with '': a total tab count below (width - 1) per row means one was short
    if df is None or data.count(b"\t") != (len(columns) - 1) * len(df):
        for _ in strict():
            pass
        # line 0: the strict reader accepted every line, so no line can be blamed
        raise MindFormatError(path, 0, ROW, f"pandas and the line splitter disagree about this file ({error})")
    if b"\r" in data:
        df[columns[-1]] = df[columns[-1]].str.removesuffix("\r")
    return df


def _per_distinct(values: pd.Series, ok: Callable[[np.ndarray], Iterable[bool]]) -> np.ndarray:
    """Row flags from `ok` evaluated once per distinct value (ids and times repeat a lot)."""
    codes, uniques = pd.factorize(values)
    return np.fromiter(ok(uniques), dtype=bool, count=len(uniques))[codes]


def _distinct_match(pattern: re.Pattern[str], values: pd.Series) -> np.ndarray:
    return _per_distinct(values, lambda u: (pattern.fullmatch(v) is not None for v in u))


def _each_match(pattern: re.Pattern[str], values: pd.Series) -> np.ndarray:
    """Row flags for mostly distinct values, where factorizing first would only add a hashing pass."""
    return np.fromiter(map(bool, map(pattern.fullmatch, values)), dtype=bool, count=len(values))


def _entities_ok(text: str) -> bool:
    try:
        parse_entities(text)
    except ValueError:
        return False
    return True


def _parse_times(values: pd.Series) -> np.ndarray:
    """datetime64 per row, NaT where not MIND time; parsed once per distinct string."""
    codes, uniques = pd.factorize(values)
    bad = np.fromiter((TIME_PATTERN.fullmatch(t) is None for t in uniques), dtype=bool, count=len(uniques))
    texts = pd.Series(uniques, dtype=object).mask(bad)
    return pd.to_datetime(texts, format=_STRPTIME, errors="coerce").to_numpy()[codes]


def _check_table(df: pd.DataFrame, path, parse: Callable, flags: dict[str, np.ndarray], key: str) -> None:
    """Raise the iterators' MindFormatError for the first line failing a row flag or repeating `key`."""
    firsts = [(int(np.argmin(ok)), col) for col, ok in flags.items() if len(ok) and not ok.all()]
    dup = df[key].duplicated().to_numpy()
    if dup.any():
        firsts.append((int(np.argmax(dup)), key))
    if not firsts:
        return
    row, column = min(firsts)
    parse(df.iloc[row].tolist(), path, row + 1)  # raises the same error as the iterators for a bad row
    value = df[key].iat[row]
    if column == key and dup[row]:
        first = int(np.argmax((df[key] == value).to_numpy())) + 1
        raise MindFormatError(path, row + 1, key, f"duplicate {key} {value!r} (first on line {first})")
    raise MindFormatError(path, row + 1, column, "failed the table check")


def read_news_table(path: str | os.PathLike) -> pd.DataFrame:
    """news.tsv as a DataFrame with NEWS_COLUMNS, all str, validated like iter_news (entity JSON included).

    Entity columns stay JSON text ('' normalized to '[]'); parse a cell with `parse_entities` when needed.
    """
    df = _read_tsv(path, NEWS_COLUMNS, lambda: iter_news(path))
    flags = {"news_id": _each_match(NEWS_ID_PATTERN, df["news_id"]),
             "category": (df["category"] != "").to_numpy(), "subcategory": (df["subcategory"] != "").to_numpy()}
    for column in ("title_entities", "abstract_entities"):
        flags[column] = _per_distinct(df[column], lambda u: map(_entities_ok, u))
    _check_table(df, path, parse_news_fields, flags, "news_id")
    for column in ("title_entities", "abstract_entities"):
        df[column] = df[column].mask(df[column] == "", "[]")
    return df


def read_behaviors_table(path: str | os.PathLike) -> pd.DataFrame:
    """behaviors.tsv as impression_id (int64), user_id (str), time (datetime64), history and impressions (str,
    space separated, as in the file), validated like iter_behaviors; ~7 s for 1M rows (230 MB) on one core."""
    df = _read_tsv(path, BEHAVIORS_COLUMNS, lambda: iter_behaviors(path))
    times = _parse_times(df["time"])
    flags = {"impression_id": _each_match(POSITIVE_ID, df["impression_id"]),
             "user_id": _distinct_match(USER_ID_PATTERN, df["user_id"]), "time": ~np.isnat(times),
             "history": _each_match(HISTORY_FIELD, df["history"]),
             "impressions": _each_match(IMPRESSIONS_FIELD, df["impressions"])}
    _check_table(df, path, parse_behavior_fields, flags, "impression_id")
    return pd.DataFrame({"impression_id": df["impression_id"].astype("int64"), "user_id": df["user_id"],
                         "time": times, "history": df["history"], "impressions": df["impressions"]})


def read_news_meta_table(path: str | os.PathLike) -> pd.DataFrame:
    """news_meta.tsv as news_id (str), publish_time and expire_time (datetime64), validated like iter_news_meta."""
    df = _read_tsv(path, NEWS_META_COLUMNS, lambda: iter_news_meta(path))
    publish, expire = _parse_times(df["publish_time"]), _parse_times(df["expire_time"])
    flags = {"news_id": _each_match(NEWS_ID_PATTERN, df["news_id"]), "publish_time": ~np.isnat(publish),
             "expire_time": ~np.isnat(expire) & ~(expire < publish)}
    _check_table(df, path, parse_meta_fields, flags, "news_id")
    return pd.DataFrame({"news_id": df["news_id"], "publish_time": publish, "expire_time": expire})


def impression_lengths(behaviors: pd.DataFrame) -> np.ndarray:
    """(n_rows,) int64: how many articles each behaviors row showed (validated rows: items split on ' ')."""
    return np.fromiter((t.count(" ") + 1 for t in behaviors["impressions"].tolist()), dtype=np.int64,
                       count=len(behaviors))


def explode_impressions(behaviors: pd.DataFrame) -> pd.DataFrame:
    """One row per shown item, in file and impression order: impression_id, user_id, time, position (int32,
    0-based within its impression), news_id (str), clicked (int8: 1, 0, or -1 when unlabelled).

    `behaviors` must come from read_behaviors_table (validated items). Splits one joined string in C instead of
    parsing items row by row: about 0.5 s per 1M shown items, most of it creating the news_id strings.
    """
    texts = behaviors["impressions"].tolist()
    counts = impression_lengths(behaviors)
    labelled_rows = np.fromiter(("-" in t for t in texts), dtype=bool, count=len(texts))
    joined = " ".join(texts)
    news_ids = joined.replace("-0", "").replace("-1", "").split(" ") if texts else []
    raw = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    labels = raw[np.flatnonzero(raw == ord("-")) + 1].astype(np.int8) - ord("0")
    labelled_items = np.repeat(labelled_rows, counts)
    if len(news_ids) != counts.sum() or labelled_items.sum() != len(labels):
        raise ValueError("impressions are not validated MIND items; read them with read_behaviors_table")
    clicked = np.full(len(news_ids), -1, dtype=np.int8)
    clicked[labelled_items] = labels
    starts = np.cumsum(counts) - counts
    return pd.DataFrame({
        "impression_id": np.repeat(behaviors["impression_id"].to_numpy(), counts),
        "user_id": np.repeat(behaviors["user_id"].to_numpy(), counts),
        "time": np.repeat(behaviors["time"].to_numpy(), counts),
        "position": (np.arange(len(news_ids)) - np.repeat(starts, counts)).astype(np.int32),
        "news_id": pd.Series(news_ids, dtype=str),
        "clicked": clicked,
    })
