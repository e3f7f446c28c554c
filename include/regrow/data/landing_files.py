"""A landing file before Spark reads it: what it is, how many records it holds, and a
copy Spark can read under a plain name.

Spark and Hadoop read paths as globs and skip names that start with ``_`` or ``.``; a
compressed or re-encoded file, or one that is not what its name says, would reach the
parser as garbage or not at all. So each file is first looked at as bytes:

- remote files are downloaded, compressed ones decompressed, into the staging folder; a
  local file is linked there under a plain name (no copy);
- a file that is not what its extension says (gzip data, a Parquet or zip file, UTF-16
  text, binary data named ``.csv``, text named ``.parquet``) is *refused* with a reason
  that says what it is and what was expected;
- its records are counted by a reader that drops nothing (every non-blank line, or CSV
  records with their quotes; a Parquet file's row count), so that ingest can check Spark
  parsed every one of them;
- a CSV record Spark would get wrong is taken out here, with its line number: a quote
  that never closes (which would swallow the rest of the file into one record), a record
  with another number of fields than the header, every record of a file whose header
  names a column twice.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import lzma
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

from regrow.data.landing import LandingFile
from regrow.storage.options import fsspec_options, reaching

# The column name given to an unnamed header cell (a trailing comma): kept as an extra.
UNNAMED = "_unnamed_{}"
_OPENERS = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
_SNIFF = 4096


@dataclass(frozen=True)
class Rejected:
    """A record (or a whole file, ``line`` None) taken out before Spark, with the reason."""

    source: str
    line: int | None
    reason: str
    record: str | None


@dataclass
class StagedFile:
    """A landing file ready for Spark: ``path`` to read (None when the file is refused),
    ``records`` it must yield, and the records taken out before."""

    source: str
    path: str | None
    records: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    header: list[str] | None = None  # CSV: the column names, in order
    header_line: int = 0  # CSV: the header's line number (blank lines before it count)
    multiline: bool = False  # CSV: a quoted field may span lines
    # CSV without quotes: the longest line in bytes and whether a control character
    # (other than tab and line breaks) occurs; None when not known (other formats).
    longest_line: int | None = None
    control_bytes: bool | None = None

    @property
    def refused(self) -> bool:
        return self.path is None


def stage(file: LandingFile, fmt: str, staging: str, index: int) -> StagedFile:
    """Look at a landing file as bytes and make the copy Spark reads (see the module)."""
    import fsspec

    source = file.source
    target = os.path.join(staging, f"{index:05d}")
    if "://" in source and not source.startswith("file://"):
        fs, path = fsspec.core.url_to_fs(source, **fsspec_options(source))
        with reaching(source, "landing.path"):
            fs.get(path, target + ".download")
        local = target + ".download"
    else:
        local = source.removeprefix("file://")
    head = _head(local)
    if file.compression:
        if not head.startswith(_MAGIC[file.compression]):
            return _refuse(source, f"named as {file.compression}-compressed, but {_what(head)}")
        try:
            with _OPENERS[file.compression](local, "rb") as packed, open(target, "wb") as out:
                shutil.copyfileobj(packed, out, 1 << 20)
        except (OSError, EOFError, lzma.LZMAError) as err:
            return _refuse(source, f"{file.compression} data that cannot be decompressed ({err})")
        local = target
        head = _head(local)
    problem = _not_a(fmt, head)
    if problem:
        return _refuse(source, problem)
    if fmt == "parquet":
        return _stage_parquet(source, local, target)
    link = target + "." + fmt
    if local == target:
        os.replace(local, link)
    else:
        os.symlink(os.path.abspath(local), link)
    if fmt == "json":
        return StagedFile(source, link, records=_non_blank_lines(link))
    return _stage_csv(source, link)


# ---------------------------------------------------------------------- what a file is
_MAGIC = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "xz": b"\xfd7zXZ\x00"}
_OTHER_MAGIC = [
    (b"PAR1", "a Parquet file"),
    (b"PK\x03\x04", "a zip archive (or an xlsx/ods spreadsheet)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel/Office document"),
    (b"\x1f\x8b", "gzip-compressed data (name it .gz to have it decompressed)"),
    (b"BZh", "bz2-compressed data (name it .bz2 to have it decompressed)"),
    (b"\xfd7zXZ\x00", "xz-compressed data (name it .xz to have it decompressed)"),
    (b"(\xb5/\xfd", "zstd-compressed data (not read: decompress it or gzip it)"),
    (codecs.BOM_UTF32_LE, "UTF-32 text (little-endian byte-order mark)"),
    (codecs.BOM_UTF32_BE, "UTF-32 text (big-endian byte-order mark)"),
    (codecs.BOM_UTF16_LE, "UTF-16 text (little-endian byte-order mark)"),
    (codecs.BOM_UTF16_BE, "UTF-16 text (big-endian byte-order mark)"),
]


def _head(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(_SNIFF)


def _what(head: bytes) -> str:
    """What the first bytes of a file say it is."""
    if not head:
        return "it is empty"
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return f"it is {what}"
    if head.count(0) > len(head) // 10:
        return "it is binary data (NUL bytes), or UTF-16 text without a byte-order mark"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith(("{", "[")):
        return "it is JSON text"
    return "it is text (CSV or lines)"


def _not_a(fmt: str, head: bytes) -> str | None:
    """Why a file's first bytes are not a file of ``fmt`` (None when they may be)."""
    if fmt == "parquet":
        if head.startswith(b"PAR1"):
            return None
        return f"not a Parquet file: {_what(head)}; landing.format parquet reads Parquet files"
    if not head:
        return None
    expected = "CSV text" if fmt == "csv" else "JSON lines"
    what = _what(head)
    binary = not what.startswith(("it is JSON", "it is text"))
    if "compressed data" in what:
        return f"not {expected}: {what}"
    if binary:
        return f"not {expected} in UTF-8: {what}; save it as UTF-8 {expected}"
    if fmt == "csv" and what == "it is JSON text":
        return f"not CSV text: {what}; landing.format is csv (set it to json for JSON lines)"
    if fmt == "json" and what != "it is JSON text":
        return f"not JSON lines: {what} (no '{{' at its start); landing.format is json"
    return None


def _refuse(source: str, reason: str) -> StagedFile:
    return StagedFile(
        source, None, rejected=[Rejected(source, None, f"file refused: {reason}", None)]
    )


# ------------------------------------------------------------------------------ counting
def _lines(path: str) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from handle


def _non_blank_lines(path: str) -> int:
    """Lines with more than white space: the records of a JSON-lines file (Spark skips
    blank lines)."""
    return sum(1 for line in _lines(path) if line.strip())


def _stage_parquet(source: str, path: str, target: str) -> StagedFile:
    """A Parquet file: its row count from the footer; nanosecond timestamps (pandas'
    default) rewritten in microseconds, which Spark reads (it refuses NANOS)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        rows = parquet.metadata.num_rows
    except (pa.ArrowException, OSError) as err:
        return _refuse(source, f"not a readable Parquet file ({err})")
    names = schema.names
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        return _refuse(source, f"its schema names column(s) {twice} twice")
    link = target + ".parquet"
    nanos = [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]
    if nanos:
        try:
            table = parquet.read()
        except (pa.ArrowException, OSError) as err:
            return _refuse(source, f"not a readable Parquet file ({err})")
        # Truncation to microseconds is what Spark's timestamp type holds anyway.
        pq.write_table(table, link, coerce_timestamps="us", allow_truncated_timestamps=True)
    elif path.startswith(target):
        os.replace(path, link)
    else:
        os.symlink(os.path.abspath(path), link)
    return StagedFile(source, link, records=rows)


def _stage_csv(source: str, path: str) -> StagedFile:
    """A CSV file's records counted, checked and, when one is taken out, rewritten."""
    header, header_line = _header(path)
    if header is None:  # empty, or blank lines only: nothing landed
        return StagedFile(source, path, records=0, header=None)
    quoted = _has_quote(path)
    if quoted:
        records = _quoted_records(
            [_text(line) + "\n" for line in _lines(path)], header_line, len(header)
        )
        good, bad = sum(1 for r in records if not r.problem), [r for r in records if r.problem]
    else:
        good, bad, facts = _plain_records(path, header_line, len(header))
    twice = sorted({n for n in header if header.count(n) > 1})
    if twice:
        return _refuse_records(source, path, header, twice, header_line, quoted)
    if bad or quoted:
        # Spark reads a copy without the records taken out, and without blank lines (a
        # multi-line parse turns a line of spaces into a record).
        if quoted:
            keep = {n for r in records if not r.problem for n in range(r.first, r.last + 1)}
        dropped = {r.first for r in bad}
        clean = path + ".clean"
        with open(clean, "wb") as out:
            for number, chunk in _numbered(path):
                if number <= header_line:
                    out.write(chunk)
                elif quoted:
                    if number in keep:
                        out.write(chunk)
                elif number not in dropped and chunk.strip():
                    out.write(chunk)
        path = clean
    rejected = [Rejected(source, r.first, r.problem, r.text) for r in bad]
    staged = StagedFile(
        source, path, good, rejected, header=header, header_line=header_line, multiline=quoted
    )
    if not quoted:
        staged.longest_line, staged.control_bytes = facts
    return staged


def _refuse_records(
    source: str, path: str, header: list[str], twice: list[str], header_line: int, quoted: bool
) -> StagedFile:
    """Every record of a file whose header names a column twice, quarantined."""
    where = ", ".join(
        f"'{n}' ({' and '.join(str(i + 1) for i, h in enumerate(header) if h == n)})" for n in twice
    )
    reason = (
        f"file refused: the header names a column twice, {where}: which one is meant is ambiguous"
    )
    lines = [_text(line) for line in _lines(path)]
    if quoted:
        spans = [
            (r.first, r.last)
            for r in _quoted_records([t + "\n" for t in lines], header_line, len(header))
        ]
    else:
        spans = [(n, n) for n in range(header_line + 1, len(lines) + 1) if lines[n - 1].strip()]
    rejected = [
        Rejected(source, first, reason, "\n".join(lines[first - 1 : last])) for first, last in spans
    ]
    return StagedFile(source, None, rejected=rejected)


def _plain_records(
    path: str, header_line: int, fields: int, chunk: int = 1 << 24
) -> tuple[int, list[_Record], tuple[int, bool]]:
    """The records of a file without a quote: each non-blank line after the header, its
    fields its commas plus one. Returns the number of records Spark reads, those taken
    out, and what the bytes say of every value: the longest line (no value is longer) and
    whether any control character occurs (the text rules need not look for one when
    none does). The commas of every line are counted in bulk (numpy, 16 MiB at a time:
    0.15 s for a million rows, 76 MB, where a loop over lines took 0.7 s); only lines whose
    count is off, and the header, are looked at one by one."""
    import numpy as np

    good, bad, before, carry = 0, [], 0, b""
    longest, control = 0, False
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            data = carry + block
            if not data:
                return good, bad, (longest, control)
            cut = data.rfind(b"\n") if block else len(data) - 1
            if cut < 0:
                carry = data
                continue
            piece, carry = data[: cut + 1], data[cut + 1 :]
            if not block and piece and not piece.endswith(b"\n"):
                piece += b"\n"  # the last line, without a final newline
            codes = np.frombuffer(piece, np.uint8)
            ends = np.flatnonzero(codes == ord("\n"))
            starts = np.concatenate(([0], ends[:-1] + 1))
            # Commas per line, the newline included in the line's slice (it is no comma).
            commas = (codes == ord(",")).view(np.uint8)
            counts = np.add.reduceat(commas, starts, dtype=np.int64)
            numbers = before + 1 + np.arange(len(ends))
            if len(ends):
                longest = max(longest, int((ends - starts).max()))
            # bytes.translate deletes every byte but a control one, in one pass of C.
            control = control or bool(piece.translate(None, _NOT_CONTROL))
            # A blank line has no comma: with one field it would pass the count.
            odd = (counts != fields - 1) | (numbers <= header_line) | (ends - starts <= 1)
            good += int(len(ends) - odd.sum())
            for i in np.flatnonzero(odd):
                number, line = int(numbers[i]), piece[starts[i] : ends[i]]
                if number <= header_line or not line.strip():
                    continue
                count = int(counts[i]) + 1
                if count == fields:
                    good += 1
                else:
                    bad.append(_Record(number, number, _text(line), _field_count(count, fields)))
            before += len(ends)
            if not block:
                return good, bad, (longest, control)


# Every byte but the C0 controls and DEL that the text rules reject (tab, line feed and
# carriage return are allowed: row_rules' _CONTROL).
_NOT_CONTROL = bytes(b for b in range(256) if not (b < 0x20 or b == 0x7F) or b in b"\t\n\r")


@dataclass(frozen=True)
class _Record:
    first: int  # its first and last line (1-based)
    last: int
    text: str | None  # the record as landed, kept when it is taken out
    problem: str | None  # why it is taken out, None when Spark reads it


def _numbered(path: str) -> Iterator[tuple[int, bytes]]:
    yield from enumerate(_lines(path), start=1)


def _header(path: str) -> tuple[list[str] | None, int]:
    """The header's column names (a spreadsheet's byte-order mark is not part of the first
    name; an unnamed cell gets a name, so its values are kept) and its line number."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                names = [n.strip() for n in next(csv.reader([line]))]
                return [n or UNNAMED.format(i + 1) for i, n in enumerate(names)], number
    return None, 0


def _has_quote(path: str, chunk: int = 1 << 24) -> bool:
    """Whether the file has a double quote anywhere (read in 16 MiB chunks)."""
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            if b'"' in block:
                return True
    return False


def _quoted_records(lines: list[str], header_line: int, fields: int) -> list[_Record]:
    """Records of quoted CSV lines. A quote still open at the end of the file takes out
    only the line it opened on, and the parse resumes on the next line: the rows after an
    unterminated quote are kept. A quote in the middle of a quoted field takes out its
    record."""
    out: list[_Record] = []
    start = header_line  # 0-based index of the next line to parse
    while start < len(lines):
        reader = csv.reader(iter(lines[start:]), strict=True)
        done = 0  # lines consumed by the records read so far
        try:
            for row in reader:
                first, last = start + done + 1, start + reader.line_num
                done = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # a blank line
                problem = None if len(row) == fields else _field_count(len(row), fields)
                text = "".join(lines[first - 1 : last]).rstrip("\n") if problem else None
                out.append(_Record(first, last, text, problem))
            break
        except csv.Error as err:
            first = start + done + 1
            if "unexpected end of data" in str(err):
                problem = "malformed record: a quote opened on this line never closes"
                last = first  # only this line: the parse resumes after it
            elif start + reader.line_num > first:
                # The quote that "closed" it is the opening quote of a later record: the
                # stray one is on this line, and the lines after it are records again.
                problem = (
                    "malformed record: a quote opened on this line closes on a later line "
                    "with text after it"
                )
                last = first
            else:
                problem = f"malformed record: {err} (a quote inside a quoted field is doubled)"
                last = max(first, start + reader.line_num)
            text = "".join(lines[first - 1 : last]).rstrip("\n")
            out.append(_Record(first, last, text, problem))
            start = last
    return out


# ------------------------------------------------------------------------- repeated keys
# The most records whose keys keys_repeat reads in the driver. Measured (2026-12-06, 15-byte
# ids, plain CSV): 1M records 0.17 s and 200 MiB more, 2M 0.97 s and 489 MiB, 10M 4.7 s and
# 1.7 GiB: the hash table of distinct values outgrows the caches and the driver's memory.
# A larger day leaves the duplicate check to Spark's sort, which spills instead.
KEY_CHECK_MAX_RECORDS = 1_500_000


def keys_repeat(files: list[StagedFile], key: str, fmt: str, whitespace: str) -> bool | None:
    """Whether a value of column ``key`` occurs in more than one record of the staged
    ``files``, read with pyarrow (one column, both cores: about 0.2 s for a million CSV
    records); None when that is not known without Spark's parse: JSON lines, a file
    that lacks the column or that pyarrow reads otherwise than it was counted, a value
    that is not UTF-8 or not text, or a day of more than :data:`KEY_CHECK_MAX_RECORDS`.

    The answer errs on the side of a repeat: values are compared with the ``whitespace``
    characters around them stripped (whatever ``dataset.key_whitespace`` says), and blank
    or null values count as values. So ``False`` means no two records can share the key
    as ingest compares it, whichever of them turn out valid, and the within-day duplicate
    check (a sort of the whole day) has nothing to find.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    read = [f for f in files if not f.refused and f.records]
    if fmt not in ("csv", "parquet") or sum(f.records for f in read) > KEY_CHECK_MAX_RECORDS:
        return None
    columns = []
    for file in read:
        try:
            values = _key_column(file, key, fmt)
        except (pa.ArrowException, OSError, ValueError):
            return None
        if values is None or len(values) != file.records:
            return None
        columns.append(values)
    if not columns:
        return False
    values = pc.utf8_trim(pa.chunked_array(columns, pa.string()), characters=whitespace)
    repeat = pc.count_distinct(values, mode="all").as_py() != len(values)
    del values, columns
    pa.default_memory_pool().release_unused()  # the ids and the hash table, back to the OS
    return repeat


def _key_column(file: StagedFile, key: str, fmt: str):
    """The ``key`` column of one staged file as a pyarrow string array (None if it has
    none, or its values are not text or integers)."""
    import pyarrow as pa
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        table = pq.read_table(file.path, columns=[key])
        if key not in table.column_names:
            return None
        values = table.column(key)
        if pa.types.is_integer(values.type):
            values = values.cast(pa.string())  # as Spark casts it: "42"
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            return None
        return values.combine_chunks().cast(pa.string())
    if not file.header or key not in file.header:
        return None
    names = [f"c{i}" for i in range(len(file.header))]  # the header's own may not be unique
    wanted = names[file.header.index(key)]
    table = pv.read_csv(
        file.path,
        # pyarrow counts the blank lines before the header as rows too.
        read_options=pv.ReadOptions(column_names=names, skip_rows=file.header_line),
        parse_options=pv.ParseOptions(newlines_in_values=file.multiline),
        convert_options=pv.ConvertOptions(
            include_columns=[wanted], column_types={wanted: pa.string()}, strings_can_be_null=False
        ),
    )
    return table.column(wanted).combine_chunks()


def _field_count(count: int, fields: int) -> str:
    return f"malformed record: {count} field(s) where the header has {fields}"


def _text(line: bytes) -> str:
    """A line as text (bytes that are not UTF-8 become U+FFFD, as Spark decodes them)."""
    return line.decode("utf-8", errors="replace").rstrip("\r\n")
