"""The landing zone: where raw files arrive, one folder per kind and day.

Layout: ``{landing.path}/{kind}/{YYYY-MM-DD}/<files>`` with kind ``events`` or ``labels``.
The path is a local directory or ``s3://bucket/prefix`` (credentials and endpoint from the
environment, as boto3 reads them).

Every entry of a day's folder is either read or reported, never skipped in silence
(:func:`scan_day`). A file is read when its name ends with an extension of
``landing.format`` in any letter case (``.csv``; ``.json``, ``.jsonl``, ``.ndjson``;
``.parquet``, ``.pq``), optionally followed by a compression suffix (``.gz``, ``.bz2``,
``.xz``) unless ``landing.compressed`` is ``refuse``. Any other name, a sub-folder, a broken
symbolic link or a special file is reported: ingest records it in ``bronze.quarantine``
with the reason. Names are never interpreted: a leading ``_`` or ``.``, glob characters
and ``:`` are plain characters of a file's name.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Literal

import fsspec

from regrow.settings import LandingSettings
from regrow.storage.options import fsspec_options, reaching

Kind = Literal["events", "labels"]
KINDS: tuple[Kind, ...] = ("events", "labels")

EXTENSIONS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "json": (".json", ".jsonl", ".ndjson"),
    "parquet": (".parquet", ".pq"),
}
# Compression suffixes read with Python's standard library, by the codec's name.
COMPRESSIONS: dict[str, str] = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".xz": "xz"}
# Suffixes of compressed files or archives that are recognised but not read.
UNSUPPORTED = {
    ".zip": "a zip archive",
    ".zst": "zstd-compressed",
    ".lz4": "lz4-compressed",
    ".snappy": "snappy-compressed",
    ".7z": "a 7-Zip archive",
    ".tar": "a tar archive",
    ".tgz": "a tar archive",
}


@dataclass(frozen=True)
class LandingFile:
    """A file of a day's folder that is read: its path (or URL) and its compression."""

    source: str
    compression: str | None = None


@dataclass(frozen=True)
class Unread:
    """An entry of a day's folder that is not read, with the reason."""

    source: str
    reason: str


@dataclass
class DayFiles:
    """What a day's folder of one kind holds: the files to read, and everything else."""

    folder: str
    files: list[LandingFile] = field(default_factory=list)
    unread: list[Unread] = field(default_factory=list)

    @property
    def sources(self) -> list[str]:
        return [f.source for f in self.files]


def day_dir(root: str, kind: Kind, day: dt.date) -> str:
    """The folder of one kind's files for one day (``root`` already resolved)."""
    return f"{root.rstrip('/')}/{kind}/{day.isoformat()}"


def day_pattern(root: str, landing: LandingSettings, kind: Kind, day: dt.date) -> str:
    """What a day's readable files look like, for messages (not a glob that is evaluated)."""
    names = "|".join(f"*{e}" for e in EXTENSIONS[landing.format])
    compressed = "" if landing.compressed == "refuse" else ", plain or .gz/.bz2/.xz"
    return f"{day_dir(root, kind, day)}/{names} (any letter case{compressed})"


def read_as(name: str, landing: LandingSettings) -> tuple[str | None, str | None]:
    """How a file named ``name`` is read: ``(compression, None)`` when it is a landing file
    of ``landing.format`` (compression None for plain), else ``(None, reason)``."""
    lower = name.lower()
    wanted = EXTENSIONS[landing.format]
    accepted = ", ".join(wanted)
    root, last = os.path.splitext(lower)
    compression = COMPRESSIONS.get(last)
    if compression is not None:
        if os.path.splitext(root)[1] not in wanted:
            return (
                None,
                f"not read: a {compression} file whose name does not end with {accepted} + {last}",
            )
        if landing.compressed == "refuse":
            return None, f"not read: {compression}-compressed, and landing.compressed is refuse"
        return compression, None
    if last in wanted:
        return None, None
    if last in UNSUPPORTED:
        return None, (
            f"not read: {UNSUPPORTED[last]}; decompress it into the day's folder, or gzip it "
            f"(.gz, .bz2 and .xz are read)"
        )
    shown = f"'{last}'" if last else "no extension"
    return None, (
        f"not read: {shown} is not a {landing.format} landing file (landing.format "
        f"{landing.format} reads {accepted} in any letter case, plain or .gz/.bz2/.xz)"
    )


def scan_day(root: str, landing: LandingSettings, kind: Kind, day: dt.date) -> DayFiles:
    """Every entry of a day's folder: the files to read (sorted by name) and the rest with
    the reason it is not read. An absent folder is an empty day."""
    folder = day_dir(root, kind, day)
    fs, path = fsspec.core.url_to_fs(folder, **fsspec_options(folder))
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
    local = protocol in ("file", "local")
    out = DayFiles(folder)
    if local:
        entries = _local_entries(path)
    else:
        with reaching(root, "landing.path"):
            if not fs.exists(path):
                return out
            listed = fs.ls(path, detail=True)
        entries = [
            (f"{protocol}://{e['name']}", e["type"] == "directory", None)
            for e in listed
            if e["name"].rstrip("/") != path.rstrip("/")
        ]
    for source, is_dir, problem in sorted(entries):
        name = source.rstrip("/").rsplit("/", 1)[-1]
        if problem:
            out.unread.append(Unread(source, problem))
        elif is_dir:
            out.unread.append(
                Unread(
                    source,
                    "not read: a folder (files are read from the day's folder itself, not its sub-folders)",
                )
            )
        else:
            compression, reason = read_as(name, landing)
            if reason:
                out.unread.append(Unread(source, reason))
            else:
                out.files.append(LandingFile(source, compression))
    return out


def _local_entries(path: str) -> list[tuple[str, bool, str | None]]:
    """(path, is a folder, why it cannot be read) of each entry of a local folder."""
    if not os.path.isdir(path):
        return []
    entries = []
    with os.scandir(path) as scan:
        for entry in scan:
            problem = None
            if entry.is_symlink() and not os.path.exists(entry.path):
                problem = f"not read: a broken symbolic link (to {os.readlink(entry.path)})"
            elif not entry.is_dir() and not entry.is_file():
                problem = "not read: not a regular file (a pipe, socket or device)"
            entries.append((entry.path, entry.is_dir() and problem is None, problem))
    return entries


def find_files(root: str, landing: LandingSettings, kind: Kind, day: dt.date) -> list[str]:
    """The day's landing files of one kind that are read, sorted; empty if none has
    arrived yet."""
    return scan_day(root, landing, kind, day).sources


def landed_bytes(root: str, landing: LandingSettings, kind: Kind, day: dt.date) -> int:
    """The size of the day's landing files of one kind that are read (compressed ones as
    they lie); 0 if none has arrived."""
    total = 0
    with reaching(root, "landing.path"):
        for source in find_files(root, landing, kind, day):
            fs, path = fsspec.core.url_to_fs(source, **fsspec_options(source))
            total += fs.size(path)
    return total


def landed_days(root: str, kind: Kind) -> list[dt.date]:
    """Every day that has a folder of ``kind`` files, oldest first."""
    base = f"{root.rstrip('/')}/{kind}"
    fs, path = fsspec.core.url_to_fs(base, **fsspec_options(base))
    with reaching(root, "landing.path"):
        if not fs.exists(path):
            return []
        listed = fs.ls(path, detail=False)
    days = []
    for entry in listed:
        try:
            days.append(dt.date.fromisoformat(entry.rstrip("/").rsplit("/", 1)[-1]))
        except ValueError:
            continue  # not a day folder
    return sorted(days)
