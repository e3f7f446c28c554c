"""Reading a day's landing files into raw rows: every value a string, every record kept.

A file's columns are matched to the contract by name; a record the parser cannot read
keeps its text in ``CORRUPT``, a file that lacks a contract column marks its rows
(``MISSING_COLUMNS``, with the record in ``RAW``), and columns beyond the contract travel
as JSON (``_extra_columns``), so that ingest can type the rows and send every bad one to
quarantine with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from regrow.catalog import EXTRA_COLUMNS, SOURCE_FILE
from regrow.data.landing import DayFiles, Unread
from regrow.data.landing_files import Rejected, StagedFile, keys_repeat, stage
from regrow.data.row_rules import WHITESPACE
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


@dataclass
class Landed:
    """A day's landing files of one kind as Spark rows, and what was taken out before."""

    rows: DataFrame
    staged: list[StagedFile]
    unread: list[Unread]
    # Whether a value of the key column read_day was given occurs in two records (None:
    # not known without Spark; see landing_files.keys_repeat).
    keys_repeat: bool | None = None

    @property
    def rejected(self) -> list[Rejected]:
        """Records and files taken out before Spark, and folder entries not read."""
        out = [r for f in self.staged for r in f.rejected]
        return out + [Rejected(u.source, None, u.reason, None) for u in self.unread]

    @property
    def not_read(self) -> list[str]:
        """Files refused and folder entries not read, sorted."""
        refused = [f.source for f in self.staged if f.refused]
        return sorted(refused + [u.source for u in self.unread])

    @property
    def records(self) -> int:
        """The records the files read hold (as their staging counted them)."""
        return sum(f.records for f in self.staged if not f.refused)

    def text_is_clean(self, max_length: int | None) -> bool:
        """Whether the files' bytes show that no value breaks a text rule: no control
        character, no line longer than ``max_length`` (known of CSV files without quotes)."""
        read = [f for f in self.staged if not f.refused and f.records]
        return all(
            f.control_bytes is False
            and (
                max_length is None or (f.longest_line is not None and f.longest_line <= max_length)
            )
            for f in read
        )

    @property
    def expected(self) -> dict[str, int]:
        """The records Spark must return per file: counted without Spark's parser."""
        return {f.source: f.records for f in self.staged if not f.refused}


def read_day(
    spark: SparkSession,
    day_files: DayFiles,
    landing_settings: LandingSettings,
    columns: list[str],
    staging: str,
    optional: tuple[str, ...] = (),
    key: str | None = None,
) -> Landed:
    """Stage each of a day's files (:mod:`regrow.data.landing_files`) and read them; with
    ``key``, find whether a value of that column occurs in two records.

    With ``landing.unreadable: fail`` a refused file or an entry that is not read stops
    the day here, naming it; otherwise they are quarantined by the caller.
    """
    staged = [
        stage(file, landing_settings.format, staging, i) for i, file in enumerate(day_files.files)
    ]
    landed = Landed(
        _read_staged(spark, staged, landing_settings, columns, optional), staged, day_files.unread
    )
    if key is not None:
        landed.keys_repeat = keys_repeat(staged, key, landing_settings.format, WHITESPACE)
    if landing_settings.unreadable == "fail":
        problems = [r for r in landed.rejected if r.line is None]
        if problems:
            raise IngestError(
                f"{problems[0].source}: {problems[0].reason} (landing.unreadable is fail; "
                f"set it to quarantine to record such files and go on)"
            )
    for unread in day_files.unread:
        logger.warning("%s: %s", unread.source, unread.reason)
    for file in staged:
        if file.refused:
            logger.warning("%s: %s", file.source, file.rejected[0].reason)
    return landed


def _read_staged(
    spark: SparkSession,
    files: list[StagedFile],
    landing_settings: LandingSettings,
    columns: list[str],
    optional: tuple[str, ...] = (),
) -> DataFrame:
    """The landed rows of staged ``files`` with every contract column as a string, untouched.

    Columns beyond the contract are kept as JSON in ``_extra_columns``; a column the file
    lacks is null, and named in ``_missing_columns`` unless it is ``optional``; a row that
    does not parse (wrong field count, truncated line, bad JSON) keeps its text in
    ``_corrupt_record``.
    """
    from pyspark.sql import functions as F

    frames = []
    for file in files:
        if file.refused or not file.records:  # nothing to read: no Spark job for it
            continue
        source = file.source
        raw = _read_one(spark, file, landing_settings.format)
        present = [c for c in raw.columns if c != CORRUPT]
        missing = [c for c in columns if c not in present and c not in optional]
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


def _read_one(spark: SparkSession, file: StagedFile, fmt: str) -> DataFrame:
    path = file.path
    if fmt == "parquet":
        try:
            return spark.read.parquet(path)
        except Exception as err:
            raise IngestError(f"{file.source}: not a readable Parquet file: {err}") from err
    if fmt == "json":
        names = _json_keys(path)
        if not names:  # no line is a JSON object: every line is a malformed record
            from pyspark.sql import functions as F

            lines = spark.read.text(path).where(F.trim("value") != "")
            return lines.select(F.col("value").alias(CORRUPT))
        schema = ", ".join([f"`{n}` string" for n in names] + [f"{CORRUPT} string"])
        return spark.read.json(
            path, schema=schema, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT
        )
    schema = ", ".join([f"`{n}` string" for n in file.header] + [f"{CORRUPT} string"])
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
        multiLine=file.multiline,
    )


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
