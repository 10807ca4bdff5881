"""Parquet inputs: one document per row, its text in the ``--text-field`` column, read by row groups.

A file is Parquet when its name ends in ``.parquet`` or its first bytes are ``PAR1``. Its footer
(schema and row-group sizes) is read up front (:func:`row_group_sizes`), so a missing text column,
or one whose Arrow type is not a string type, fails the job before anything is written.

A row group is the smallest part of a Parquet file that can be read on its own, so a large file is
split into read units of consecutive row groups, about the split size each by the groups'
compressed bytes (:func:`group_ranges`); no row is read twice or missed. A unit reads only its own
row groups and only the text column, one record batch of ``BATCH_ROWS`` rows at a time: memory
holds one row group's column chunk at most, never the file. Files are opened through Beam's
FileSystems (``gs://`` and the rest), which ``pyarrow.parquet.ParquetFile`` reads as a file object.

The text is handed on as UTF-8 bytes (the column cast to binary), so the reader decodes and counts
it as it does a JSON Lines line, bytes that are not UTF-8 included; a null text is ``None``.
"""

from __future__ import annotations

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from configs.errors import TrimbertError

SUFFIX = ".parquet"
MAGIC = b"PAR1"
BATCH_ROWS = 1024


def is_parquet(path: str, head: bytes) -> bool:
    """Whether the file at ``path``, whose first bytes are ``head``, is read as Parquet."""
    return path.endswith(SUFFIX) or head.startswith(MAGIC)


def _open(path: str):
    import pyarrow.parquet as pq

    handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    try:
        return handle, pq.ParquetFile(handle)
    except Exception as error:  # pyarrow's ArrowInvalid or a filesystem's error: name the file
        handle.close()
        raise TrimbertError(f"input file {path} is not a readable Parquet file: {error}") from error


def row_group_sizes(path: str, text_field: str) -> list[int]:
    """Checks the file's text column from its footer; returns each row group's compressed bytes.

    Raises:
        TrimbertError: naming the file, when it is not Parquet, has no column ``text_field`` (listing
            the columns it has) or that column is not of a string type (naming its type).
    """
    import pyarrow as pa

    handle, file = _open(path)
    with handle:
        schema, metadata = file.schema_arrow, file.metadata
    if text_field not in schema.names:
        raise TrimbertError(f"Parquet file {path} has no column {text_field!r} (--text-field); its columns: "
                            f"{', '.join(schema.names) or 'none'}")
    column_type = schema.field(text_field).type
    is_string_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow 16 on
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type) or is_string_view(column_type)):
        raise TrimbertError(f"Parquet file {path}: column {text_field!r} has type {column_type}, not a string "
                            f"type (string, large_string or string_view)")
    groups = (metadata.row_group(index) for index in range(metadata.num_row_groups))
    return [sum(group.column(column).total_compressed_size for column in range(group.num_columns))
            for group in groups]


def group_ranges(sizes: list[int], split_bytes: int) -> list[tuple[int, int]]:
    """``[start, end)`` row-group ranges of about ``split_bytes`` compressed bytes each (a group
    larger than that is a range of its own); a file no larger is one range ``(0, -1)`` (-1: to the
    last group)."""
    if sum(sizes) <= split_bytes:
        return [(0, -1)]
    ranges, start, total = [], 0, 0
    for index, size in enumerate(sizes):
        if index > start and total + size > split_bytes:
            ranges.append((start, index))
            start, total = index, 0
        total += size
    return ranges + [(start, -1)]


def parquet_texts(path: str, start: int, end: int, text_field: str):
    """Yields the text of every row of row groups ``[start, end)`` (``end`` -1: to the last) as
    UTF-8 bytes, or None for a null, one row group and one record batch at a time."""
    import pyarrow as pa

    handle, file = _open(path)
    with handle:
        stop = file.num_row_groups if end < 0 else end
        for group in range(start, stop):
            batches = file.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=[text_field],
                                        use_threads=False)
            while True:
                try:
                    batch = next(batches, None)
                except (OSError, pa.ArrowException) as error:  # a corrupt page: name the file, not a traceback
                    raise TrimbertError(f"Parquet file {path}: row group {group} cannot be read (corrupt?): "
                                        f"{error}") from error
                if batch is None:
                    break
                yield from batch.column(0).cast(pa.large_binary()).to_pylist()


def rows_from(path: str, group: int) -> int:
    """How many rows the row groups from ``group`` on hold (from the footer)."""
    handle, file = _open(path)
    with handle:
        metadata = file.metadata
        return sum(metadata.row_group(index).num_rows for index in range(group, metadata.num_row_groups))
