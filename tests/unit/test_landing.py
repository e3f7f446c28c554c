"""regrow.data.landing: the layout of the landing zone and what has arrived in it."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest

from regrow.data.landing import (
    day_dir,
    day_pattern,
    find_files,
    landed_bytes,
    landed_days,
    read_as,
    scan_day,
)
from regrow.settings import LandingSettings

DAY = dt.date(2026, 1, 2)
CSV = LandingSettings(format="csv")
JSON = LandingSettings(format="json")


def _land(root: Path, kind: str, day: dt.date | str, *names: str) -> list[Path]:
    folder = root / kind / (day if isinstance(day, str) else day.isoformat())
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in names]
    for path in paths:
        path.write_text("transaction_id\n")
    return paths


def test_day_dir_is_kind_then_iso_date_under_the_root_whatever_its_trailing_slash():
    assert day_dir("data/landing", "events", DAY) == "data/landing/events/2026-01-02"
    assert day_dir("data/landing/", "events", DAY) == "data/landing/events/2026-01-02"
    assert day_dir("s3://bucket/prefix/", "labels", DAY) == "s3://bucket/prefix/labels/2026-01-02"


def test_day_pattern_names_the_formats_extensions_in_the_day_dir():
    parquet = LandingSettings(format="parquet", compressed="refuse")

    assert day_pattern("/srv/landing/", CSV, "events", DAY) == (
        "/srv/landing/events/2026-01-02/*.csv (any letter case, plain or .gz/.bz2/.xz)"
    )
    assert day_pattern("/srv/landing", JSON, "labels", DAY) == (
        "/srv/landing/labels/2026-01-02/*.json|*.jsonl|*.ndjson "
        "(any letter case, plain or .gz/.bz2/.xz)"
    )
    assert day_pattern("s3://bucket/landing", parquet, "events", dt.date(2025, 12, 31)) == (
        "s3://bucket/landing/events/2025-12-31/*.parquet|*.pq (any letter case)"
    )


@pytest.mark.parametrize(
    ("name", "compression", "reason"),
    [
        ("a.csv", None, None),
        ("A.CSV", None, None),
        ("_x.csv", None, None),
        (".x.csv", None, None),
        ("[a]{b}*?:.csv", None, None),
        ("a.csv.gz", "gzip", None),
        ("a.CSV.GZIP", "gzip", None),
        ("a.csv.bz2", "bz2", None),
        ("a.csv.xz", "xz", None),
        ("a.json.gz", None, "not read: a gzip file whose name does not end with .csv + .gz"),
        ("a.csv.zip", None, "not read: a zip archive; decompress it"),
        ("a.csv.zst", None, "not read: zstd-compressed; decompress it"),
        ("_SUCCESS", None, "not read: no extension is not a csv landing file"),
        ("a.csv.tmp", None, "not read: '.tmp' is not a csv landing file"),
        ("a.tsv", None, "not read: '.tsv' is not a csv landing file"),
    ],
)
def test_read_as_decides_by_extension_in_any_case(name, compression, reason):
    got_compression, got_reason = read_as(name, CSV)
    assert got_compression == compression
    assert (got_reason or "").startswith(reason or ""), got_reason
    assert (got_reason is None) == (reason is None)


def test_compressed_refuse_reports_compressed_files():
    refuse = LandingSettings(format="csv", compressed="refuse")
    assert read_as("a.csv.gz", refuse) == (
        None,
        "not read: gzip-compressed, and landing.compressed is refuse",
    )


def test_scan_day_reports_folders_broken_links_and_other_names(tmp_path):
    folder = tmp_path / "events" / DAY.isoformat()
    folder.mkdir(parents=True)
    for name in ("b.csv", "A.CSV", "notes.txt"):
        (folder / name).write_text("x\n")
    (folder / "sub.csv").mkdir()
    (folder / "gone.csv").symlink_to(tmp_path / "missing.csv")
    (folder / "link.csv").symlink_to(folder / "b.csv")

    found = scan_day(str(tmp_path), CSV, "events", DAY)

    assert [Path(f).name for f in found.sources] == ["A.CSV", "b.csv", "link.csv"]
    reasons = {Path(u.source).name: u.reason for u in found.unread}
    assert sorted(reasons) == ["gone.csv", "notes.txt", "sub.csv"]
    assert reasons["gone.csv"].startswith("not read: a broken symbolic link")
    assert reasons["sub.csv"].startswith("not read: a folder")


def test_find_files_returns_the_days_files_of_the_format_sorted(tmp_path):
    # Written out of order: the result's order must come from find_files, not the disk.
    part1, redelivered, part0 = _land(
        tmp_path, "events", DAY, "part-00001.csv", "part-00000-redelivered.csv", "part-00000.csv"
    )

    assert find_files(str(tmp_path), CSV, "events", DAY) == [
        str(redelivered),
        str(part0),
        str(part1),
    ]


def test_landed_bytes_counts_the_files_read_as_they_lie(tmp_path):
    folder = tmp_path / "events" / str(DAY)
    folder.mkdir(parents=True)
    (folder / "part-00000.csv").write_bytes(b"x" * 1000)
    (folder / "part-00001.CSV.gz").write_bytes(gzip.compress(b"y" * 5000))  # 5,000 unpacked
    (folder / "notes.txt").write_bytes(b"z" * 300)  # not read, not counted
    _land(tmp_path, "labels", DAY, "part-00000.csv")

    packed = (folder / "part-00001.CSV.gz").stat().st_size
    assert landed_bytes(str(tmp_path), CSV, "events", DAY) == 1000 + packed
    assert landed_bytes(str(tmp_path), CSV, "events", DAY + dt.timedelta(days=1)) == 0


def test_find_files_ignores_other_kinds_days_and_formats(tmp_path):
    (events,) = _land(tmp_path, "events", DAY, "part-00000.csv")
    _land(tmp_path, "events", DAY, "part-00000.json", "part-00000.parquet", "notes.txt")
    (labels,) = _land(tmp_path, "labels", DAY, "part-00000.csv")
    _land(tmp_path, "events", DAY + dt.timedelta(days=1), "part-00000.csv")
    _land(tmp_path, "events", DAY - dt.timedelta(days=1), "part-00000.csv")

    assert find_files(str(tmp_path), CSV, "events", DAY) == [str(events)]
    assert find_files(str(tmp_path), CSV, "labels", DAY) == [str(labels)]
    assert find_files(str(tmp_path), JSON, "events", DAY) == [
        str(tmp_path / "events" / "2026-01-02" / "part-00000.json")
    ]


def test_find_files_is_the_same_with_a_trailing_slash_on_the_root(tmp_path):
    (events,) = _land(tmp_path, "events", DAY, "part-00000.csv")

    assert find_files(f"{tmp_path}/", CSV, "events", DAY) == [str(events)]


def test_find_files_is_empty_before_anything_landed(tmp_path):
    assert find_files(str(tmp_path / "landing"), CSV, "events", DAY) == []

    _land(tmp_path, "events", DAY - dt.timedelta(days=1), "part-00000.csv")
    _land(tmp_path, "events", DAY)  # the day's folder exists, its files have not arrived
    _land(tmp_path, "labels", DAY, "part-00000.json")  # another format

    assert find_files(str(tmp_path), CSV, "events", DAY) == []
    assert find_files(str(tmp_path), CSV, "labels", DAY) == []


def test_landed_days_lists_the_kinds_day_folders_oldest_first(tmp_path):
    for day in ("2026-01-03", "2025-12-31", "2026-01-01"):
        _land(tmp_path, "events", day, "part-00000.csv")
    _land(tmp_path, "labels", "2026-02-01", "part-00000.csv")

    expected = [dt.date(2025, 12, 31), dt.date(2026, 1, 1), dt.date(2026, 1, 3)]
    assert landed_days(str(tmp_path), "events") == expected
    assert landed_days(f"{tmp_path}/", "events") == expected
    assert landed_days(str(tmp_path), "labels") == [dt.date(2026, 2, 1)]


def test_landed_days_skips_folders_that_are_not_dates(tmp_path):
    for folder in ("2026-01-05", "_tmp", "not-a-day", "2026-13-01", "2026-01-05.bak"):
        _land(tmp_path, "events", folder)

    assert landed_days(str(tmp_path), "events") == [dt.date(2026, 1, 5)]


def test_landed_days_is_empty_when_nothing_has_landed(tmp_path):
    assert landed_days(str(tmp_path / "missing"), "events") == []

    _land(tmp_path, "events", DAY, "part-00000.csv")

    assert landed_days(str(tmp_path), "labels") == []
