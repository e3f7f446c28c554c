"""Landing files as real feeds drop them (tests/data/bad_inputs/README.md, "files"): odd
names, other-case and compressed extensions, things in a day's folder that are not landing
files, files that are not what their name says, broken CSV structure, and Parquet as pandas
writes it. Each ends read into bronze or reported in quarantine with a reason naming the
file (and line); rows in, counted from the bytes without Spark, = bronze + quarantine.

One landing day holds every CSV case and is ingested once; Parquet cases have their own
day and format.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import io
import os
from collections import defaultdict
from pathlib import Path

import pytest

from regrow.catalog import EVENTS
from regrow.data.ingest import ingest_day
from regrow.data.landing_reader import IngestError
from regrow.settings import load_settings
from tests import bad_inputs as corpus
from tests.conftest import context_of, lakehouse_of, quarantined, write_params

DAY = corpus.DAY


def rows(prefix: str, n: int) -> list[str]:
    return [corpus.line(corpus.event(f"{prefix}{i}")) for i in range(1, n + 1)]


def text(lines: list[str], header: str = corpus.HEADER) -> bytes:
    return corpus.csv_text(lines, header=header)


# name -> bytes; the name is the file's name in the day's folder.
READ = {
    "UPPER.CSV": text(rows("up", 2)),
    "zipped.csv.gz": gzip.compress(text(rows("gz", 3))),
    "Packed.Csv.BZ2": bz2.compress(text(rows("bz", 2))),
    "_underscore.csv": text(rows("us", 2)),
    ".hidden.csv": text(rows("hi", 1)),
    "glob [1]{a,b}*?.csv": text(rows("gl", 2)),
    "time 12:00 ü.csv": text(rows("co", 1)),
}
# The first lines of a quoted file: a field with a newline and a doubled quote (legal),
# blank and white-space lines (no record), a quote that never closes, and rows after it.
QUOTED = (
    corpus.HEADER
    + "\n"
    + corpus.line(corpus.event("qu1", merchant_category='"multi\nline ""x"""'))
    + "\n\n   \n"
    + corpus.line(corpus.event("qu2", merchant_category='"never closed'))
    + "\n"
    + "\n".join(rows("qu", 5)[2:])
    + "\n"
).encode()
NOT_READ = {
    "notes.txt": (b"hello\n", "not read: '.txt' is not a csv landing file"),
    "NOEXT": (b"x\n", "not read: no extension is not a csv landing file"),
    "bundle.zip": (b"PK\x03\x04rest", "not read: a zip archive"),
}
REFUSED = {
    "utf16.csv": (
        text(rows("u16", 2)).decode().encode("utf-16"),
        "file refused: not CSV text in UTF-8: it is UTF-16 text (little-endian byte-order mark)",
    ),
    "gzip_named_plain.csv": (
        gzip.compress(text(rows("gzp", 2))),
        "file refused: not CSV text: it is gzip-compressed data (name it .gz",
    ),
    "parquet_named.csv": (
        b"PAR1\x00\x00PAR1",
        "file refused: not CSV text in UTF-8: it is a Parquet file",
    ),
    "json_named.csv": (b'{"transaction_id": "x"}\n', "file refused: not CSV text: it is JSON text"),
    "broken.csv.gz": (
        gzip.compress(text(rows("bro", 50)))[:40],
        "file refused: gzip data that cannot be decompressed",
    ),
    "plain_named.csv.gz": (
        text(rows("png", 1)),
        "file refused: named as gzip-compressed, but it is text",
    ),
}
DUPLICATED_HEADER = corpus.HEADER.replace("channel", "amount")


def land(root: Path, name: str, data: bytes) -> Path:
    folder = root / "events" / DAY.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def day(spark, tmp_path_factory):
    settings = load_settings(write_params(tmp_path_factory.mktemp("landing_files")))
    root = Path(settings.resolve(settings.landing.path))
    for name, data in READ.items():
        land(root, name, data)
    for name, (data, _) in {**NOT_READ, **REFUSED}.items():
        land(root, name, data)
    land(root, "quoted.csv", QUOTED)
    land(root, "fields.csv", text([*rows("fc", 2), "fc9,c-fc9,extra", rows("fc", 3)[2]]))
    land(root, "duplicated_header.csv", text(rows("dh", 2), header=DUPLICATED_HEADER))
    (root / "events" / DAY.isoformat() / "folder.csv").mkdir()
    (root / "events" / DAY.isoformat() / "gone.csv").symlink_to(root / "nowhere.csv")
    lh = lakehouse_of(settings)
    report = ingest_day(context_of(settings, spark, lakehouse=lh), DAY)
    bronze = defaultdict(list)
    for row in lh.to_arrow(EVENTS).to_pylist():
        bronze[Path(row["_source_file"]).name].append(row)
    rejected = defaultdict(list)
    for row in quarantined(lh, "events", DAY):
        rejected[Path(row["source_file"]).name].append(row)
    return report, bronze, rejected, root / "events" / DAY.isoformat()


def test_every_entry_of_the_folder_is_read_or_reported_and_rows_add_up(day):
    report, bronze, rejected, folder = day
    entries = {e.name for e in os.scandir(folder)}
    assert set(bronze) | set(rejected) == entries
    assert report.events.rows_in == sum(len(b) for b in bronze.values()) + sum(
        len(r) for r in rejected.values()
    )
    assert report.events.rows_in == report.events.bronze_rows + report.events.quarantined_rows
    assert sorted(Path(f).name for f in report.events.not_read) == sorted(
        [*NOT_READ, *REFUSED, "folder.csv", "gone.csv", "duplicated_header.csv"]
    )


def _rows_of(name: str, data: bytes) -> int:
    """Data lines of a file's bytes (decompressed as its name says), after the header."""
    if name.lower().endswith(".gz"):
        data = gzip.decompress(data)
    elif name.lower().endswith(".bz2"):
        data = bz2.decompress(data)
    return len(data.decode("utf-8").strip().splitlines()) - 1


READ_ROWS = {name: _rows_of(name, data) for name, data in READ.items()}


@pytest.mark.parametrize("name", list(READ))
def test_odd_names_other_cases_and_compressed_files_are_read(day, name):
    _, bronze, rejected, _ = day
    assert len(bronze[name]) == READ_ROWS[name]
    assert name not in rejected


@pytest.mark.parametrize("name", [*NOT_READ, *REFUSED])
def test_a_file_that_is_not_read_is_reported_with_what_it_is(day, name):
    _, bronze, rejected, _ = day
    reason = {**NOT_READ, **REFUSED}[name][1]
    [row] = rejected[name]
    assert row["reason"].startswith(reason), row["reason"]
    assert row["source_line"] is None and row["record"] is None
    assert name not in bronze


def test_a_folder_and_a_broken_link_named_like_files_are_reported(day):
    _, _, rejected, _ = day
    [folder] = rejected["folder.csv"]
    assert folder["reason"].startswith("not read: a folder")
    [link] = rejected["gone.csv"]
    assert link["reason"].startswith("not read: a broken symbolic link")


def test_an_unterminated_quote_takes_out_its_line_only_and_legal_quotes_are_read(day):
    _, bronze, rejected, _ = day
    [bad] = rejected["quoted.csv"]
    assert bad["reason"] == "malformed record: a quote opened on this line never closes"
    # Header on line 1, qu1 on lines 2-3, a blank and a white-space line, then qu2.
    assert bad["source_line"] == 6
    assert bad["record"].startswith("qu2,")
    kept = {r["transaction_id"]: r for r in bronze["quoted.csv"]}
    assert sorted(kept) == ["qu1", "qu3", "qu4", "qu5"]
    assert kept["qu1"]["merchant_category"] == 'multi\nline "x"'


def test_a_record_with_another_number_of_fields_is_quarantined_with_its_line(day):
    _, bronze, rejected, _ = day
    [bad] = rejected["fields.csv"]
    assert (bad["source_line"], bad["record"]) == (4, "fc9,c-fc9,extra")
    assert (
        bad["reason"]
        == f"malformed record: 3 field(s) where the header has {len(corpus.EVENT_COLUMNS)}"
    )
    assert sorted(r["transaction_id"] for r in bronze["fields.csv"]) == ["fc1", "fc2", "fc3"]


def test_a_header_naming_a_column_twice_quarantines_every_record_with_its_line(day):
    _, bronze, rejected, _ = day
    bad = sorted(rejected["duplicated_header.csv"], key=lambda r: r["source_line"])
    assert [r["source_line"] for r in bad] == [2, 3]
    assert bad[0]["record"].startswith("dh1,")
    assert bad[0]["reason"].startswith(
        "file refused: the header names a column twice, 'amount' (4 and 8)"
    )
    assert "duplicated_header.csv" not in bronze


def test_unreadable_fail_stops_the_day_naming_the_file(spark, make_settings):
    settings = make_settings(landing={"unreadable": "fail"})
    root = Path(settings.resolve(settings.landing.path))
    land(root, "good.csv", text(rows("ok", 1)))
    land(root, "utf16.csv", REFUSED["utf16.csv"][0])
    lh = lakehouse_of(settings)
    with pytest.raises(
        IngestError, match=r"utf16\.csv: file refused: .*UTF-16.*landing\.unreadable is fail"
    ):
        ingest_day(context_of(settings, spark, lakehouse=lh), DAY)
    assert not lh.exists(EVENTS)  # nothing half-written


def test_compressed_refuse_reports_compressed_files(spark, make_settings):
    settings = make_settings(landing={"compressed": "refuse"})
    root = Path(settings.resolve(settings.landing.path))
    land(root, "good.csv", text(rows("ok", 1)))
    land(root, "zipped.csv.gz", READ["zipped.csv.gz"])
    lh = lakehouse_of(settings)
    report = ingest_day(context_of(settings, spark, lakehouse=lh), DAY)
    assert report.events.bronze_rows == 1
    [row] = quarantined(lh, "events", DAY)
    assert row["reason"] == "not read: gzip-compressed, and landing.compressed is refuse"


def test_a_day_with_nothing_readable_fails_naming_what_is_there(spark, make_settings):
    settings = make_settings()
    root = Path(settings.resolve(settings.landing.path))
    land(root, "events.CSV.zip", b"PK\x03\x04")
    with pytest.raises(
        IngestError,
        match=r"no events file to read for 2025-01-15: .*events\.CSV\.zip: not read: a zip archive",
    ):
        ingest_day(context_of(settings, spark), DAY)


# --------------------------------------------------------------------------- Parquet
def parquet_bytes(frame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def test_parquet_as_pandas_writes_it_is_ingested_and_text_named_parquet_is_refused(
    spark, make_settings
):
    import pandas as pd

    settings = make_settings(landing={"format": "parquet"})
    root = Path(settings.resolve(settings.landing.path))
    frame = pd.DataFrame([corpus.event(f"pq{i}") for i in range(1, 4)])
    # pandas' defaults: nanosecond timestamps, a categorical as a dictionary column,
    # and a column beyond the contract.
    frame["event_time"] = pd.to_datetime(frame["event_time"]) + pd.Timedelta(nanoseconds=7)
    frame["channel"] = frame["channel"].astype("category")
    frame["amount"] = frame["amount"].astype(float)
    frame["loyalty"] = "gold"
    land(root, "pandas.PARQUET", parquet_bytes(frame))
    land(root, "text.parquet", text(rows("tx", 1)))
    lh = lakehouse_of(settings)
    report = ingest_day(context_of(settings, spark, lakehouse=lh), DAY)
    good = sorted(lh.to_arrow(EVENTS).to_pylist(), key=lambda r: r["transaction_id"])
    assert [r["transaction_id"] for r in good] == ["pq1", "pq2", "pq3"]
    assert good[0]["event_time"] == dt.datetime(2025, 1, 15, 12, tzinfo=dt.UTC)
    assert good[0]["channel"] == "pos"
    assert good[0]["_extra_columns"] == '{"loyalty":"gold"}'
    [refused] = quarantined(lh, "events", DAY)
    assert Path(refused["source_file"]).name == "text.parquet"
    assert refused["reason"].startswith("file refused: not a Parquet file: it is text")
    assert report.events.rows_in == 4
