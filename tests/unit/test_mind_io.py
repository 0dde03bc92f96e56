"""MIND file I/O: writer/reader round trips, the time format, every MindFormatError path (iterators and fast tables
alike), explode_impressions, and validate_dir on a hand-written MIND-small fixture."""
from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data import mind
from data.schema import (
    BEHAVIORS_COLUMNS, NEWS_COLUMNS, Behavior, Entity, ImpressionItem, MindFormatError, NewsArticle, NewsMeta,
    format_mind_time, parse_mind_time,
)
from data.validate import DirStats, find_split_dirs, format_stats, validate_dir

FIXTURE = Path(__file__).parents[1] / "fixtures" / "mind_small"
T = datetime(2019, 11, 15, 8, 55, 22)

ENTITY = Entity("Luka Dončić", "P", "Q18640963", 0.97, (13, 40), ("Luka Dončić", "Dončić"))
ARTICLES = [
    NewsArticle("N1", "news", "newsus", '"Wheel of Fortune" guest\'s "off the rails" intro', "It's \"sweet\".",
                "https://assets.msn.com/labs/mind/AAJ8Jb2.html", (ENTITY,), (ENTITY, ENTITY)),
    NewsArticle("N22", "sports", "basketball_nba", "Dončić: 35 pts — «triple-double» 🏀", ""),
    NewsArticle("N333", "tech", "techai", r"C:\path\to\model and a literal \t and \n", 'ends with a quote"', ""),
    NewsArticle("N4444", "lifestyle", "lifestyleroyals", "'", '"', "", (), (ENTITY,)),
]
BEHAVIORS = [
    Behavior("1", "U13740", datetime(2019, 11, 5, 8, 5, 2), ("N1", "N22"),
             (ImpressionItem("N333", True), ImpressionItem("N4444", False), ImpressionItem("N1", False))),
    Behavior("2", "U1", datetime(2019, 1, 1, 0, 0, 0), (), (ImpressionItem("N22", False),)),  # midnight, no history
    Behavior("3", "U1", datetime(2019, 12, 31, 12, 0, 59), ("N333",),  # noon, unlabelled (test split)
             (ImpressionItem("N1", None), ImpressionItem("N22", None))),
    Behavior("40", "U999", datetime(2020, 2, 29, 23, 59, 59), ("N4444",) * 3, (ImpressionItem("N4444", True),)),
]
METAS = [NewsMeta("N1", datetime(2019, 11, 1, 0, 0, 0), datetime(2019, 11, 3, 12, 0, 0)),
         NewsMeta("N22", datetime(2019, 11, 2, 9, 1, 2), datetime(2019, 11, 2, 9, 1, 2))]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="")
    return path


# ---- time format --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t, text", [
    (datetime(2019, 11, 5, 8, 5, 2), "11/5/2019 8:05:02 AM"),
    (datetime(2019, 11, 15, 0, 0, 0), "11/15/2019 12:00:00 AM"),
    (datetime(2019, 11, 15, 0, 59, 59), "11/15/2019 12:59:59 AM"),
    (datetime(2019, 11, 15, 12, 0, 0), "11/15/2019 12:00:00 PM"),
    (datetime(2019, 1, 9, 13, 7, 9), "1/9/2019 1:07:09 PM"),
    (datetime(2019, 12, 31, 23, 59, 59), "12/31/2019 11:59:59 PM"),
])
def test_mind_time_format_is_exact_and_round_trips(t, text):
    assert format_mind_time(t) == text
    assert parse_mind_time(text) == t


@pytest.mark.parametrize("text", ["11/15/2019 0:00:00 AM", "11/15/2019 13:00:00 PM", "11/15/2019 8:5:22 AM",
                                  "11/15/2019 08:55:22", "2019-11-15 08:55:22", "13/15/2019 8:55:22 AM",
                                  "2/30/2019 8:55:22 AM"])
def test_parse_mind_time_rejects(text):
    with pytest.raises(ValueError):
        parse_mind_time(text)


# ---- round trips ----------------------------------------------------------------------------------------------------

def test_news_round_trip_tricky_text(tmp_path):
    path = tmp_path / "news.tsv"
    assert mind.write_news(path, ARTICLES) == len(ARTICLES)
    assert list(mind.iter_news(path)) == ARTICLES
    table = mind.read_news_table(path)
    assert list(table.columns) == list(NEWS_COLUMNS)
    for article, row in zip(ARTICLES, table.itertuples(index=False)):
        assert (row.news_id, row.title, row.abstract, row.url) == (article.news_id, article.title, article.abstract,
                                                                    article.url)
        assert mind.parse_entities(row.title_entities) == article.title_entities
        assert mind.parse_entities(row.abstract_entities) == article.abstract_entities


def test_behaviors_round_trip_and_table_agrees(tmp_path):
    path = tmp_path / "behaviors.tsv"
    mind.write_behaviors(path, BEHAVIORS)
    assert path.read_text().splitlines()[1] == "2\tU1\t1/1/2019 12:00:00 AM\t\tN22-0"
    assert path.read_text().splitlines()[2].endswith("\tN333\tN1 N22")
    records = list(mind.iter_behaviors(path))
    assert records == BEHAVIORS
    assert [b.labelled for b in records] == [True, True, False, True]
    table = mind.read_behaviors_table(path)
    assert table["impression_id"].dtype == np.int64 and np.issubdtype(table["time"].dtype, np.datetime64)
    assert table["impression_id"].tolist() == [int(b.impression_id) for b in records]
    assert table["user_id"].tolist() == [b.user_id for b in records]
    assert [t.to_pydatetime() for t in table["time"]] == [b.time for b in records]
    assert table["history"].tolist() == [" ".join(b.history) for b in records]
    assert table["impressions"].tolist() == [mind.behavior_to_row(b)[4] for b in records]


def test_news_meta_round_trip(tmp_path):
    path = tmp_path / "news_meta.tsv"
    mind.write_news_meta(path, METAS)
    assert list(mind.iter_news_meta(path)) == METAS
    table = mind.read_news_meta_table(path)
    assert table["news_id"].tolist() == ["N1", "N22"]
    assert [t.to_pydatetime() for t in table["expire_time"]] == [m.expire_time for m in METAS]


def test_readers_tolerate_crlf_and_empty_entity_columns(tmp_path):
    path = tmp_path / "news.tsv"
    path.write_bytes(b"N1\tnews\tnewsus\tA \"quoted\" title\t\t\t\t\r\nN2\tnews\tnewsus\tB\tb\tu\t[]\t[]\r\n")
    articles = list(mind.iter_news(path))
    assert articles[0] == NewsArticle("N1", "news", "newsus", 'A "quoted" title', "")
    assert articles[1].abstract_entities == ()
    table = mind.read_news_table(path)
    assert table["abstract_entities"].tolist() == ["[]", "[]"]
    assert table["title"].tolist() == ['A "quoted" title', "B"]


def test_empty_files_read_as_nothing(tmp_path):
    path = _write(tmp_path / "behaviors.tsv", [])
    assert list(mind.iter_behaviors(path)) == []
    table = mind.read_behaviors_table(path)
    assert list(table.columns) == list(BEHAVIORS_COLUMNS) and len(table) == 0
    assert len(mind.explode_impressions(table)) == 0


def test_bulk_rows_writer_matches_typed_writer(tmp_path, monkeypatch):
    monkeypatch.setattr(mind, "_CHUNK_ROWS", 3)  # several chunks
    rows = [mind.behavior_to_row(b) for b in BEHAVIORS]
    mind.write_behaviors_rows(tmp_path / "rows.tsv", iter(rows))
    mind.write_behaviors(tmp_path / "typed.tsv", BEHAVIORS)
    assert (tmp_path / "rows.tsv").read_bytes() == (tmp_path / "typed.tsv").read_bytes()
    mind.write_news_rows(tmp_path / "news.tsv", map(mind.news_to_row, ARTICLES))
    assert list(mind.iter_news(tmp_path / "news.tsv")) == ARTICLES


# ---- writers refuse -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["category", "subcategory", "title", "abstract", "url"])
@pytest.mark.parametrize("bad", ["a\tb", "a\nb", "a\r\nb", "trailing\r"])
def test_news_writer_refuses_tabs_and_line_breaks(tmp_path, field, bad):
    article = NewsArticle(**{**ARTICLES[0].__dict__, field: bad})
    with pytest.raises(ValueError, match=field):
        mind.write_news(tmp_path / "news.tsv", [article])
    assert not any(tmp_path.iterdir())  # no half-written file, no temporary left behind


@pytest.mark.parametrize("change, field", [
    ({"impression_id": "0"}, "impression_id"), ({"impression_id": "x1"}, "impression_id"),
    ({"user_id": "u1"}, "user_id"), ({"user_id": "U1\t"}, "user_id"), ({"history": ("N1", "N 2")}, "history"),
    ({"impressions": (ImpressionItem("N1\n", True),)}, "impressions"),
    ({"impressions": (ImpressionItem("N1", True), ImpressionItem("N2", None))}, "impressions"),
    ({"impressions": ()}, "impressions"),
])
def test_behavior_writer_refuses(tmp_path, change, field):
    with pytest.raises(ValueError, match=field):
        mind.write_behaviors(tmp_path / "b.tsv", [Behavior(**{**BEHAVIORS[0].__dict__, **change})])


def test_writers_refuse_bad_ids_and_times(tmp_path):
    with pytest.raises(ValueError, match="news_id"):
        mind.write_news(tmp_path / "n.tsv", [NewsArticle("n1", "a", "b", "t", "")])
    with pytest.raises(ValueError, match="expire_time"):
        mind.write_news_meta(tmp_path / "m.tsv", [NewsMeta("N1", T, datetime(2019, 1, 1))])


@pytest.mark.parametrize("row, reason", [
    (("1", "U1", "x", "", "N1-1", "extra"), "expected 5 columns, found 6"),
    (("1", "U1", "x", "N1\tN2", "N1-1"), "history of row 4 contains a tab"),
    (("1", "U1", "x", "", "N1-1\n2"), "impressions of row 4 contains a tab or line break"),
])
def test_bulk_writer_names_the_bad_row(tmp_path, monkeypatch, row, reason):
    monkeypatch.setattr(mind, "_CHUNK_ROWS", 3)
    good = [mind.behavior_to_row(b) for b in BEHAVIORS]
    with pytest.raises(ValueError, match=reason):
        mind.write_behaviors_rows(tmp_path / "b.tsv", good + [row])
    assert not any(tmp_path.iterdir())


# ---- readers raise MindFormatError(path, line, column) ---------------------------------------------------------

NEWS_OK = "N1\tnews\tnewsus\tTitle\tAbstract\thttps://x\t[]\t[]"
BEHAVIOR_OK = "1\tU1\t11/15/2019 8:55:22 AM\tN1 N2\tN3-1 N4-0"
META_OK = "N1\t11/15/2019 8:55:22 AM\t11/16/2019 8:55:22 AM"
READERS = {"news": (mind.iter_news, mind.read_news_table),
           "behaviors": (mind.iter_behaviors, mind.read_behaviors_table),
           "meta": (mind.iter_news_meta, mind.read_news_meta_table)}
BAD = [  # (file kind, bad line placed on line 2 after a good one, column, reason fragment)
    ("news", "N2\tnews\tnewsus\tT\tA", "<row>", "expected 8 columns, found 5"),
    ("news", NEWS_OK.replace("N1", "N2") + "\textra", "<row>", "expected 8 columns, found 9"),
    ("news", "", "<row>", "expected 8 columns, found 1"),
    ("news", NEWS_OK.replace("N1", "X2"), "news_id", "'X2' is not a news id"),
    ("news", NEWS_OK.replace("N1", "N2").replace("\tnews\t", "\t\t"), "category", "is empty"),
    ("news", NEWS_OK.replace("N1", "N2").replace("[]\t[]", '[{"Label": "A"\t[]'), "title_entities", "not valid JSON"),
    ("news", NEWS_OK.replace("N1", "N2").replace("\t[]", '\t{"Label": 1}', 1), "title_entities", "JSON list"),
    ("news", NEWS_OK.replace("N1", "N2")[:-2] + '[{"Label": "A", "Type": "P"}]', "abstract_entities",
     "lacks key 'WikidataId'"),
    ("news", NEWS_OK, "news_id", "duplicate news_id 'N1' (first on line 1)"),
    ("behaviors", "2\tU1\t11/15/2019 8:55:22 AM\tN1", "<row>", "expected 5 columns, found 4"),
    ("behaviors", BEHAVIOR_OK.replace("1\tU1", "0\tU1"), "impression_id", "not a positive integer"),
    ("behaviors", BEHAVIOR_OK.replace("1\tU1", "2\tu1"), "user_id", "'u1' is not a user id"),
    ("behaviors", BEHAVIOR_OK.replace("1\tU1", "2\tU1").replace("8:55:22 AM", "08:55:22"), "time", "MIND format"),
    ("behaviors", BEHAVIOR_OK.replace("1\tU1", "2\tU1").replace("8:55:22 AM", "0:55:22 AM"), "time", "1..12"),
    ("behaviors", BEHAVIOR_OK.replace("1\tU1", "2\tU1").replace("11/15", "2/30"), "time", "day is out of range"),
    ("behaviors", BEHAVIOR_OK.replace("1\tU1", "2\tU1").replace("N1 N2", "N1  N2"), "history", "at item 1"),
    ("behaviors", BEHAVIOR_OK.replace("1\tU1", "2\tU1").replace("N3-1", "N3-2"), "impressions", "item 0 'N3-2'"),
    ("behaviors", BEHAVIOR_OK.replace("1\tU1", "2\tU1").replace("N4-0", "N4"), "impressions", "mixes labelled"),
    ("behaviors", BEHAVIOR_OK.replace("1\tU1", "2\tU1").replace("N3-1 N4-0", ""), "impressions", "is empty"),
    ("behaviors", BEHAVIOR_OK, "impression_id", "duplicate impression_id '1' (first on line 1)"),
    ("meta", META_OK.replace("N1", "N2").replace("11/16", "11/14"), "expire_time", "before publish_time"),
    ("meta", META_OK.replace("N1", "N2").replace("AM\t", "XM\t"), "publish_time", "MIND format"),
    ("meta", META_OK.replace("N1", "Nx"), "news_id", "'Nx' is not a news id"),
    ("meta", META_OK, "news_id", "duplicate news_id"),
]
GOOD_LINE = {"news": NEWS_OK, "behaviors": BEHAVIOR_OK, "meta": META_OK}
LAST_LINE = {"news": "N9\tnews\tnewsus\tT\tA\tu\t[]\t[]", "behaviors": "9\tU9\t11/5/2019 1:00:00 PM\t\tN9",
             "meta": "N9\t11/5/2019 1:00:00 PM\t11/5/2019 1:00:00 PM"}


@pytest.mark.parametrize("last", ["valid", "short"])  # a short row sends the fast reader down its slow path
@pytest.mark.parametrize("kind, bad_line, column, reason", BAD)
def test_readers_raise_naming_file_line_and_column(tmp_path, kind, bad_line, column, reason, last):
    last_line = LAST_LINE[kind] if last == "valid" else "N9\tshort"  # the first bad line must be the one reported
    path = _write(tmp_path / f"{kind}.tsv", [GOOD_LINE[kind], bad_line, last_line])
    iterate, read_table = READERS[kind]
    with pytest.raises(MindFormatError) as strict:
        list(iterate(path))
    with pytest.raises(MindFormatError) as fast:
        read_table(path)
    for err in (strict.value, fast.value):
        assert (err.path, err.line, err.column) == (str(path), 2, column)
        assert reason in err.reason
        assert f"{path}:2: column {column!r}" in str(err)
    assert fast.value.reason == strict.value.reason


def test_readers_report_bad_first_line_and_bad_utf8(tmp_path):
    path = _write(tmp_path / "news.tsv", [NEWS_OK + "\textra", NEWS_OK.replace("N1", "N2")])
    for read in (lambda p: list(mind.iter_news(p)), mind.read_news_table):
        with pytest.raises(MindFormatError, match="expected 8 columns, found 9") as err:
            read(path)
        assert err.value.line == 1
    path.write_bytes(NEWS_OK.encode() + b"\nN2\tnews\tnewsus\t\xff\t\t\t[]\t[]\n")
    for read in (lambda p: list(mind.iter_news(p)), mind.read_news_table):
        with pytest.raises(MindFormatError, match="UTF-8") as err:
            read(path)
        assert (err.value.line, err.value.column) == (2, "<row>")


def test_short_row_is_caught_even_when_line_counts_balance(tmp_path):
    # pandas pads short rows silently; the reader must still name the short line
    path = _write(tmp_path / "behaviors.tsv", [BEHAVIOR_OK, "2\tU1\t11/15/2019 8:55:22 AM\tN1"])
    with pytest.raises(MindFormatError, match="expected 5 columns, found 4") as err:
        mind.read_behaviors_table(path)
    assert err.value.line == 2


# ---- explode_impressions ----------------------------------------------------------------------------------------

def test_explode_impressions_positions_and_labels(tmp_path):
    path = tmp_path / "behaviors.tsv"
    mind.write_behaviors(path, BEHAVIORS)
    shown = mind.explode_impressions(mind.read_behaviors_table(path))
    assert list(shown.columns) == ["impression_id", "user_id", "time", "position", "news_id", "clicked"]
    assert shown["clicked"].dtype == np.int8
    assert shown["impression_id"].tolist() == [1, 1, 1, 2, 3, 3, 40]
    assert shown["position"].tolist() == [0, 1, 2, 0, 0, 1, 0]
    assert shown["news_id"].tolist() == ["N333", "N4444", "N1", "N22", "N1", "N22", "N4444"]
    assert shown["clicked"].tolist() == [1, 0, 0, 0, -1, -1, 1]
    assert shown["user_id"].tolist() == ["U13740"] * 3 + ["U1"] * 3 + ["U999"]
    assert shown["time"].iloc[5] == pd.Timestamp(BEHAVIORS[2].time)


def test_explode_impressions_matches_records_on_fixture():
    path = FIXTURE / "MINDsmall_train" / "behaviors.tsv"
    shown = mind.explode_impressions(mind.read_behaviors_table(path))
    expected = [(int(b.impression_id), p, i.news_id, int(i.clicked))
                for b in mind.iter_behaviors(path) for p, i in enumerate(b.impressions)]
    assert list(zip(shown["impression_id"], shown["position"], shown["news_id"], shown["clicked"])) == expected


def test_fast_tables_agree_with_iterators_on_fixture():
    for split in ("MINDsmall_train", "MINDsmall_dev"):
        news = mind.read_news_table(FIXTURE / split / "news.tsv")
        articles = list(mind.iter_news(FIXTURE / split / "news.tsv"))
        assert news["news_id"].tolist() == [a.news_id for a in articles]
        assert news["title"].tolist() == [a.title for a in articles]
        assert [mind.parse_entities(t) for t in news["abstract_entities"]] == [a.abstract_entities for a in articles]
        table = mind.read_behaviors_table(FIXTURE / split / "behaviors.tsv")
        records = list(mind.iter_behaviors(FIXTURE / split / "behaviors.tsv"))
        assert table["history"].tolist() == [" ".join(b.history) for b in records]
        assert [t.to_pydatetime() for t in table["time"]] == [b.time for b in records]


# ---- validate_dir -------------------------------------------------------------------------------------------------

def test_validate_dir_accepts_fixture_and_counts():
    stats = validate_dir(FIXTURE)
    by_name = {s.name: s for s in stats.splits}
    assert [s.name for s in stats.splits] == ["MINDsmall_dev", "MINDsmall_train"]
    train, dev = by_name["MINDsmall_train"], by_name["MINDsmall_dev"]
    assert (train.articles, train.categories, train.subcategories) == (10, 7, 10)
    assert (train.behaviors, train.users, train.shown, train.clicks) == (8, 6, 24, 9)
    assert train.ctr == pytest.approx(9 / 24) and train.mean_history == pytest.approx(20 / 8)
    assert train.empty_history_share == pytest.approx(1 / 8) and train.labelled == "yes"
    assert (train.time_min, train.time_max) == (datetime(2019, 11, 9, 10, 15), datetime(2019, 11, 14, 14, 47, 3))
    assert (dev.articles, dev.categories, dev.subcategories) == (10, 8, 10)
    assert (dev.behaviors, dev.users, dev.shown, dev.clicks) == (7, 5, 21, 7)
    assert (dev.time_min, dev.time_max) == (datetime(2019, 11, 15, 0, 0, 1), datetime(2019, 11, 15, 23, 59, 59))
    assert train.borrowed_references == dev.borrowed_references == 0
    text = format_stats(stats)
    assert "MINDsmall_train" in text and "37.50%" in text
    assert json.loads(json.dumps(stats.to_dict()))["splits"][1]["clicks"] == 9


def test_fixture_has_real_mind_quirks():
    news = (FIXTURE / "MINDsmall_train" / "news.tsv").read_text(encoding="utf-8")
    assert '\t"Wheel of Fortune" Guest' in news and "\t\t" in news and news.count("\t") == 7 * 10
    assert any(line.endswith("\t") for line in news.splitlines())  # an empty entity column


def test_validate_dir_reports_unknown_ids(tmp_path):
    world = shutil.copytree(FIXTURE, tmp_path / "mind")
    behaviors = world / "MINDsmall_dev" / "behaviors.tsv"
    with behaviors.open("a") as f:
        f.write("8\tU1\t11/15/2019 1:00:00 PM\tN55528 N999\tN998-0 N999-1\n")
    with pytest.raises(MindFormatError, match=r"3 references to 2 news ids .* \(first: N999\)") as err:
        validate_dir(world)
    assert (err.value.path, err.value.line, err.value.column) == (str(behaviors), 8, "history")


def test_validate_dir_synthetic_layout_with_meta_and_borrowed_ids(tmp_path):
    for split, behaviors in (("train", BEHAVIORS[:2]), ("dev", BEHAVIORS[2:])):
        (tmp_path / split).mkdir()
        mind.write_behaviors(tmp_path / split / "behaviors.tsv", behaviors)
    mind.write_news(tmp_path / "train" / "news.tsv", ARTICLES)
    mind.write_news(tmp_path / "dev" / "news.tsv", ARTICLES[:3])  # N4444 only in train
    mind.write_news_meta(tmp_path / "news_meta.tsv", METAS)
    stats = validate_dir(tmp_path)
    dev, train = stats.splits
    assert (dev.name, dev.borrowed_references, dev.labelled, dev.clicks, dev.ctr) == ("dev", 4, "partly", 1, 1.0)
    assert (train.articles_with_meta, train.borrowed_references, train.empty_history_share) == (2, 0, 0.5)
    assert isinstance(stats, DirStats) and "partly" in format_stats(stats)
    mind.write_news_meta(tmp_path / "dev" / "news_meta.tsv", [NewsMeta("N5", T, T)])
    with pytest.raises(MindFormatError, match="N5 is in no news.tsv") as err:
        validate_dir(tmp_path)
    assert (err.value.line, err.value.column) == (1, "news_id")


def test_validate_dir_without_pairs_raises(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no news.tsv \\+ behaviors.tsv pair"):
        validate_dir(tmp_path)
    mind.write_news(tmp_path / "empty" / "news.tsv", ARTICLES)
    with pytest.raises(FileNotFoundError, match="has news.tsv but no behaviors.tsv"):
        find_split_dirs(tmp_path)
    with pytest.raises(NotADirectoryError):
        validate_dir(tmp_path / "missing")


def test_validate_dir_accepts_a_split_directory_itself():
    stats = validate_dir(FIXTURE / "MINDsmall_train")
    assert [s.name for s in stats.splits] == ["MINDsmall_train"] and stats.splits[0].behaviors == 8


def test_table_check_stricter_than_parser_still_names_line_and_column(tmp_path, monkeypatch):
    # guards the fast path's own regexes: if one rejects what the record parser accepts, the error still points there
    monkeypatch.setattr(mind, "HISTORY_FIELD", re.compile("never"))
    path = _write(tmp_path / "behaviors.tsv", [BEHAVIOR_OK])
    with pytest.raises(MindFormatError, match="failed the table check") as err:
        mind.read_behaviors_table(path)
    assert (err.value.line, err.value.column) == (1, "history")


def test_pandas_disagreeing_with_the_line_splitter_is_an_error(tmp_path, monkeypatch):
    def broken_read_csv(*args, **kwargs):
        raise pd.errors.ParserError("simulated tokenizer failure")
    monkeypatch.setattr(mind.pd, "read_csv", broken_read_csv)
    path = _write(tmp_path / "news.tsv", [NEWS_OK])
    with pytest.raises(MindFormatError, match="simulated tokenizer failure"):
        mind.read_news_table(path)
