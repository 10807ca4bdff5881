"""Tables a user brings: CSV, TSV, JSON Lines and Parquet files, read as a stream of rows.

The format comes from the file name: ``.csv``; ``.tsv`` or ``.tab``; ``.jsonl``, ``.ndjson`` or
``.json`` (one object per line); ``.parquet``.

- CSV: the first line names the columns; fields follow RFC 4180 (Python's ``csv``), so a quoted field
  may hold commas, quotes and line breaks.
- TSV: the first line names the columns; fields are split on tabs with no quoting, as GLUE's files
  are written, so a quote is text.
- In both, every line after the header is a row, a blank one too (an empty value in every column: a
  one-column file writes an empty text so), so output rows stay aligned with input lines; only blank
  lines at the end of the file are not rows. A row with
  fewer fields than the header, or more that are not empty (an unquoted comma inside a text shifts
  the columns), is an error naming its line; so is a header naming a requested column twice.
- JSON Lines: one object per non-blank line; its keys are the columns. The first object's keys are
  the file's columns, and a later object that lacks a requested key, or holds a string with a lone
  surrogate escape (``"\\ud83d"``: half a character, which no text encoding can carry), is an error
  naming its line.
- Parquet: the schema's columns, read one record batch at a time.

Values come back as stored: strings from CSV and TSV, JSON values from JSON Lines, Python values
from Parquet. Each row says where it came from (``FILE line N``, or ``FILE row N`` for Parquet,
both counted from 1), so a caller's error can name it. Rows are read lazily in batches: a file larger
than memory streams through. Files are opened through ``storage``, so ``gs://`` paths work too.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from collections.abc import Iterator, Sequence

import storage
from configs.errors import TrimbertError

CSV, TSV, JSON_LINES, PARQUET = "csv", "tsv", "jsonl", "parquet"
SUFFIXES = {".csv": CSV, ".tsv": TSV, ".tab": TSV, ".jsonl": JSON_LINES, ".ndjson": JSON_LINES,
            ".json": JSON_LINES, ".parquet": PARQUET}
BATCH_ROWS = 1024

csv.field_size_limit(sys.maxsize)  # a long document is one field; the default limit is 128 KiB


@dataclasses.dataclass(frozen=True)
class Row:
    """One row's values in the order the columns were asked for, and where it was read."""

    where: str
    values: tuple


def table_format(path: str) -> str:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet``, from the file name's suffix."""
    lowered = str(path).lower()
    for suffix, kind in SUFFIXES.items():
        if lowered.endswith(suffix):
            return kind
    raise TrimbertError(f"{path}: unknown table format; name the file .csv, .tsv, .jsonl or .parquet")


def read_columns(path: str) -> list[str]:
    """The file's column names (header line, first JSON object's keys, or Parquet schema).

    Raises:
        TrimbertError: naming the file when it is missing, empty or not readable as its format.
    """
    kind = table_format(path)
    _check_exists(path)
    if kind == PARQUET:
        handle, parquet = _open_parquet(path)
        with handle:
            return list(parquet.schema_arrow.names)
    with _text(path) as text:
        try:
            if kind == JSON_LINES:
                for number, line in enumerate(text, start=1):
                    if line.strip():
                        return list(_json_object(line, f"{path} line {number}"))
                raise TrimbertError(f"{path} is empty")
            header = next(_csv_reader(text, kind), None)
        except UnicodeDecodeError as error:
            raise TrimbertError(f"{path}: not UTF-8 text ({error})") from error
        if not header:
            raise TrimbertError(f"{path} is empty")
        return [name.lstrip("\ufeff") if position == 0 else name for position, name in enumerate(header)]


def iter_rows(path: str, columns: Sequence[str], batch_rows: int = BATCH_ROWS) -> Iterator[list[Row]]:
    """Batches of rows holding the values of ``columns``, in file order.

    Args:
        path: a CSV, TSV, JSON Lines or Parquet file.
        columns: the column names to read.
        batch_rows: the most rows per batch.

    Raises:
        TrimbertError: naming the file and the columns it has when one of ``columns`` is missing;
            naming the line when a row is malformed.
    """
    available = read_columns(path)
    missing = [column for column in columns if column not in available]
    if missing:
        raise TrimbertError(f"{path} has no column {', '.join(repr(name) for name in missing)}; its columns: "
                            f"{', '.join(available) or 'none'}")
    repeated = [column for column in dict.fromkeys(columns) if available.count(column) > 1]
    if repeated:
        raise TrimbertError(f"{path}: the header names column {', '.join(repr(name) for name in repeated)} "
                            f"more than once")
    rows = {PARQUET: _parquet_rows, JSON_LINES: _json_rows}.get(table_format(path), _delimited_rows)
    batch: list[Row] = []
    for row in rows(path, list(columns), available):
        batch.append(row)
        if len(batch) >= batch_rows:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_exists(path: str) -> None:
    if not storage.isfile(path):
        raise TrimbertError(f"{path} not found")


def _text(path: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(storage.open_binary(path), encoding="utf-8-sig", newline="")


def _csv_reader(text, kind: str):
    if kind == TSV:
        return csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE)
    return csv.reader(text)


def _delimited_rows(path: str, columns: list[str], available: list[str]) -> Iterator[Row]:
    positions = [available.index(column) for column in columns]
    width = len(available)
    with _text(path) as text:
        reader = _csv_reader(text, table_format(path))
        next(reader)
        start = reader.line_num + 1
        blank: list[str] = []  # blank lines not yet followed by a row: rows unless the file ends first
        try:
            for fields in reader:
                where, start = f"{path} line {start}", reader.line_num + 1
                if not fields:
                    blank.append(where)
                    continue
                for blank_where in blank:  # an empty value in every column
                    yield Row(blank_where, tuple("" for _ in positions))
                blank = []
                if len(fields) < width or any(field.strip() for field in fields[width:]):
                    raise TrimbertError(f"{where}: {len(fields)} field(s) where the header has {width} (an "
                                        f"unquoted separator inside a value?)")
                yield Row(where, tuple(fields[position] for position in positions))
        except csv.Error as error:
            raise TrimbertError(f"{path} line {reader.line_num}: not valid CSV: {error}") from error
        except UnicodeDecodeError as error:
            raise TrimbertError(f"{path}: not UTF-8 text ({error})") from error


def _json_object(line: str, where: str) -> dict:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise TrimbertError(f"{where}: not a JSON object: {error}") from error
    if not isinstance(value, dict):
        raise TrimbertError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _json_rows(path: str, columns: list[str], available: list[str]) -> Iterator[Row]:
    with _text(path) as text:
        try:
            for number, line in enumerate(text, start=1):
                if not line.strip():
                    continue
                where = f"{path} line {number}"
                record = _json_object(line, where)
                missing = [column for column in columns if column not in record]
                if missing:
                    raise TrimbertError(f"{where}: no key {', '.join(repr(name) for name in missing)}")
                values = tuple(record[column] for column in columns)
                for column, value in zip(columns, values, strict=True):
                    if isinstance(value, str) and not _encodable(value):
                        raise TrimbertError(f"{where}: key {column!r} holds a lone UTF-16 surrogate escape "
                                            f"(half of a character cut in two?)")
                yield Row(where, values)
        except UnicodeDecodeError as error:
            raise TrimbertError(f"{path}: not UTF-8 text ({error})") from error


def _encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode: JSON's ``\\ud83d`` escape alone decodes to an unpaired surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _open_parquet(path: str):
    import pyarrow.parquet as pq

    handle = storage.open_binary(path)
    try:
        return handle, pq.ParquetFile(handle)
    except Exception as error:  # pyarrow's ArrowInvalid or a filesystem's error: name the file
        handle.close()
        raise TrimbertError(f"{path} is not a readable Parquet file: {error}") from error


def _parquet_rows(path: str, columns: list[str], available: list[str]) -> Iterator[Row]:
    import pyarrow as pa

    handle, parquet = _open_parquet(path)
    number = 0
    with handle:
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=list(dict.fromkeys(columns))):
                values = [batch.column(column).to_pylist() for column in columns]
                for row in zip(*values, strict=True):
                    number += 1
                    yield Row(f"{path} row {number}", tuple(row))
        except (OSError, pa.ArrowException) as error:  # ArrowInvalid or an OSError on a corrupt page
            raise TrimbertError(f"{path}: corrupt Parquet data after row {number}: {error}") from error
