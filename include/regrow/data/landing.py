"""The landing zone: where raw files arrive, one folder per kind and day.

Layout: ``{landing.path}/{kind}/{YYYY-MM-DD}/*.{format}`` with kind ``events`` or ``labels``.
The path is a local directory or ``s3://bucket/prefix`` (credentials and endpoint from the
environment, as boto3 reads them).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import fsspec

from regrow.settings import LandingSettings

Kind = Literal["events", "labels"]
KINDS: tuple[Kind, ...] = ("events", "labels")


def day_dir(root: str, kind: Kind, day: dt.date) -> str:
    """The folder of one kind's files for one day (``root`` already resolved)."""
    return f"{root.rstrip('/')}/{kind}/{day.isoformat()}"


def day_pattern(root: str, landing: LandingSettings, kind: Kind, day: dt.date) -> str:
    return f"{day_dir(root, kind, day)}/*.{landing.format}"


def find_files(root: str, landing: LandingSettings, kind: Kind, day: dt.date) -> list[str]:
    """The day's landing files of one kind, sorted; empty if none has arrived yet."""
    pattern = day_pattern(root, landing, kind, day)
    fs, _, _ = fsspec.get_fs_token_paths(pattern)
    found = sorted(fs.glob(pattern))
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
    if protocol in ("file", "local"):
        return found
    return [f"{protocol}://{p}" for p in found]


def landed_days(root: str, kind: Kind) -> list[dt.date]:
    """Every day that has a folder of ``kind`` files, oldest first."""
    base = f"{root.rstrip('/')}/{kind}"
    fs, _, _ = fsspec.get_fs_token_paths(base)
    if not fs.exists(base):
        return []
    days = []
    for entry in fs.ls(base, detail=False):
        try:
            days.append(dt.date.fromisoformat(entry.rstrip("/").rsplit("/", 1)[-1]))
        except ValueError:
            continue  # not a day folder
    return sorted(days)
