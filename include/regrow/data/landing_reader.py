"""Reading a day's landing files into raw rows: every value a string, every record kept.

A file's columns are matched to the contract by name; a record the parser cannot read
keeps its text in ``CORRUPT``, a file that lacks a contract column marks its rows
(``MISSING_COLUMNS``, with the record in ``RAW``), and columns beyond the contract travel
as JSON (``_extra_columns``), so that ingest can type the rows and send every bad one to
quarantine with its reason.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import uuid
from typing import TYPE_CHECKING

import fsspec

from regrow.catalog import EXTRA_COLUMNS, SOURCE_FILE
from regrow.settings import LandingSettings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

logger = logging.getLogger(__name__)

# Working columns of a parse, never written.
CORRUPT = "_corrupt_record"
MISSING_COLUMNS = "_missing_columns"
RAW = "_raw"


class IngestError(RuntimeError):
    """A day cannot be ingested (no landing file, unreadable file, lost rows)."""


def read_landing(
    spark: SparkSession,
    files: list[str],
    landing_settings: LandingSettings,
    columns: list[str],
    staging: str,
) -> DataFrame:
    """The landed rows of ``files`` with every contract column as a string, untouched.

    Columns beyond the contract are kept as JSON in ``_extra_columns``; a column the file lacks is null
    and named in ``_missing_columns``; a row that does not parse (wrong field count,
    truncated line, bad JSON) keeps its text in ``_corrupt_record``. Remote files are
    copied to ``staging`` first, which must outlive the DataFrame's use.
    """
    from pyspark.sql import functions as F

    frames = []
    for source in files:
        local = _local_path(source, staging)
        raw = _read_one(spark, local, landing_settings.format)
        present = [c for c in raw.columns if c != CORRUPT]
        if not raw.columns:  # an empty file: nothing landed
            continue
        missing = [c for c in columns if c not in present]
        extra = [c for c in present if c not in columns]
        selected = [
            (F.col(f"`{c}`").cast("string") if c in present else F.lit(None).cast("string")).alias(
                c
            )
            for c in columns
        ]
        corrupt = F.col(CORRUPT) if CORRUPT in raw.columns else F.lit(None).cast("string")
        # The row as landed, kept for the quarantine of a file that lacks a column (its
        # rows are all quarantined); other files' rows never need it.
        whole = F.to_json(F.struct(*[F.col(f"`{c}`").cast("string").alias(c) for c in present]))
        frames.append(
            raw.select(
                *selected,
                corrupt.alias(CORRUPT),
                (whole if missing else F.lit(None).cast("string")).alias(RAW),
                F.lit(",".join(missing) or None).cast("string").alias(MISSING_COLUMNS),
                _as_json(extra).alias(EXTRA_COLUMNS),
                F.lit(source).alias(SOURCE_FILE),
            )
        )
        if missing:
            logger.warning("%s lacks column(s) %s: its rows go to quarantine", source, missing)
    if not frames:
        return spark.createDataFrame(
            [],
            ", ".join(
                f"`{c}` string"
                for c in [*columns, CORRUPT, RAW, MISSING_COLUMNS, EXTRA_COLUMNS, SOURCE_FILE]
            ),
        )
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _as_json(columns: list[str]) -> Column:
    from pyspark.sql import functions as F

    if not columns:
        return F.lit(None).cast("string")
    return F.to_json(F.struct(*[F.col(f"`{c}`").cast("string").alias(c) for c in columns]))


def _local_path(source: str, staging: str) -> str:
    """Spark reads local files; a remote landing file (s3://) is staged locally first,
    since a pip-only Spark has no S3 filesystem (hadoop-aws)."""
    if "://" not in source or source.startswith("file://"):
        return source.removeprefix("file://")
    target = os.path.join(staging, uuid.uuid4().hex + "-" + os.path.basename(source))
    fs, path = fsspec.core.url_to_fs(source)
    fs.get(path, target)
    return target


def _read_one(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    if fmt == "parquet":
        try:
            return spark.read.parquet(path)
        except Exception as err:
            raise IngestError(f"{path}: not a readable Parquet file: {err}") from err
    if fmt == "json":
        names = _json_keys(path)
        if not names:  # empty, or no line is a JSON object: every line is a malformed record
            from pyspark.sql import functions as F

            lines = spark.read.text(path).where(F.trim("value") != "")
            return lines.select(F.col("value").alias(CORRUPT))
        schema = ", ".join([f"`{n}` string" for n in names] + [f"{CORRUPT} string"])
        return spark.read.json(
            path, schema=schema, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT
        )
    header = _csv_header(path)
    if header is None:  # an empty file: nothing landed
        logger.warning("%s is empty", path)
        return spark.createDataFrame([], "")
    schema = ", ".join([f"`{n}` string" for n in header] + [f"{CORRUPT} string"])
    return spark.read.csv(
        path,
        schema=schema,
        header=True,
        enforceSchema=True,
        mode="PERMISSIVE",
        columnNameOfCorruptRecord=CORRUPT,
        encoding="UTF-8",
        # RFC 4180, as Python's csv module and spreadsheets write it: "" inside quotes is a
        # quote, and a quoted field may hold a newline (Spark's defaults: \ and one line).
        escape='"',
        # Only a file with a quote can hold a newline inside a field. Spark parses a
        # multi-line file in one task; a file of plain lines is split across the cores.
        multiLine=_has_quote(path),
    )


def _has_quote(path: str, chunk: int = 1 << 24) -> bool:
    """Whether the file has a double quote anywhere (read in 16 MiB chunks)."""
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            if b'"' in block:
                return True
    return False


def _csv_header(path: str) -> list[str] | None:
    # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name.
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        first = handle.readline()
    if not first.strip():
        return None
    return [name.strip() for name in next(csv.reader(io.StringIO(first)))]


def _json_keys(path: str) -> list[str]:
    """Keys of the first parseable JSON line (the schema every line is read with)."""
    import json

    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                return list(record)
    return []
