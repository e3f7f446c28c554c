"""regrow.data.landing_files.keys_repeat: whether a day's files can hold a duplicate key.

Its ``False`` lets ingest skip the within-day duplicate check, so a wrong ``False`` would
let a duplicate into bronze: every case where two records may share a key as ingest
compares it must answer True or None.
"""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from regrow.data.landing import LandingFile
from regrow.data.landing_files import keys_repeat, stage
from regrow.data.row_rules import WHITESPACE


def _staged(tmp_path, files: dict[str, bytes], fmt: str = "csv"):
    staging = tmp_path / "staging"
    staging.mkdir(parents=True)
    out = []
    for i, (name, data) in enumerate(files.items()):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        compression = "gzip" if name.endswith(".gz") else None
        out.append(stage(LandingFile(str(path), compression), fmt, str(staging), i))
    return out


def _repeat(tmp_path, files: dict[str, bytes], fmt: str = "csv", key: str = "id"):
    return keys_repeat(_staged(tmp_path, files, fmt), key, fmt, WHITESPACE)


@pytest.mark.parametrize(
    ("body", "repeats"),
    [
        (b"id,x\n1,a\n2,b\n3,c\n", False),
        (b"id,x\n1,a\n2,b\n1,c\n", True),
        # Whitespace around a key: the same key once trimmed (U+3000 is ideographic space).
        (b"id,x\n1,a\n 1\t,b\n", True),
        ("id,x\n1,a\n1\u3000,b\n".encode(), True),
        # Blank keys count as a value: two are a repeat (the check decides, not this).
        (b"id,x\n,a\n ,b\n", True),
        # A blank line before the header and inside the data; CRLF line ends; a BOM.
        (b"\xef\xbb\xbf\nid,x\r\n1,a\r\n\r\n2,b\r\n", False),
        (b"\nid,x\n1,a\n\n1,b\n", True),
        # Quoted values, one spanning two lines: the same key once parsed.
        (b'x,id\n"a\nb",1\n"c",2\n', False),
        (b'x,id\n"a\nb",1\n"c","1"\n', True),
        # A malformed record is taken out before Spark; the rest is looked at.
        (b"id,x\n1,a\n2,b,extra\n2,c\n", False),
        ("id,x\n\u00e9,a\ne\u0301,b\n".encode(), False),  # not the same string
    ],
)
def test_a_repeated_key_is_found_in_a_csv_file(tmp_path, body, repeats):
    assert _repeat(tmp_path, {"day.csv": body}) is repeats


def test_a_key_repeated_across_two_files_or_a_resent_compressed_copy(tmp_path):
    body = b"id,x\n1,a\n2,b\n"
    assert _repeat(tmp_path / "1", {"a.csv": body, "b.csv": b"id,x\n3,c\n"}) is False
    assert _repeat(tmp_path / "2", {"a.csv": body, "a (1).csv.gz": gzip.compress(body)}) is True


def test_what_cannot_be_told_without_spark_is_none(tmp_path):
    # A file without the key column, bytes that are not UTF-8, JSON lines.
    assert _repeat(tmp_path / "1", {"d.csv": b"other,x\n1,a\n"}) is None
    assert _repeat(tmp_path / "2", {"d.csv": b"id,x\n\xff\xfe1,a\n2,b\n"}) is None
    assert _repeat(tmp_path / "3", {"d.json": b'{"id": "1"}\n{"id": "2"}\n'}, "json") is None


def test_a_day_too_large_to_read_in_the_driver_is_left_to_spark(tmp_path, monkeypatch):
    monkeypatch.setattr("regrow.data.landing_files.KEY_CHECK_MAX_RECORDS", 2)
    assert _repeat(tmp_path / "1", {"d.csv": b"id,x\n1,a\n2,b\n"}) is False
    assert _repeat(tmp_path / "2", {"d.csv": b"id,x\n1,a\n2,b\n3,c\n"}) is None


def test_no_record_repeats_nothing(tmp_path):
    assert _repeat(tmp_path, {"d.csv": b"id,x\n"}) is False


@pytest.mark.parametrize(
    ("ids", "repeats"),
    [(["a", "b"], False), (["a", " a"], True), ([1, 2], False), ([1, 1], True), ([1.0, 2.0], None)],
)
def test_a_parquet_files_key_column_is_read(tmp_path, ids, repeats):
    path = tmp_path / "data.parquet"
    pd.DataFrame({"id": ids, "x": ["u", "v"]}).to_parquet(path)
    assert _repeat(tmp_path, {"day.parquet": path.read_bytes()}, "parquet") is repeats
