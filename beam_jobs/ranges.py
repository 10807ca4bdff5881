"""Byte ranges of one large uncompressed file, so several workers read it at once.

A corpus often comes as a few huge files; read whole, one file is one worker's work however many
workers there are. An uncompressed file larger than the split size becomes several read units, each
a byte range ``[start, end)``. The rule that keeps every document read exactly once is the usual
one for splittable text (Hadoop's, Beam's ``TextIO``): every line belongs to the range its first
byte falls in, and a document to the range of its first line. A reader starting at ``start > 0``
first looks at the line just before its first whole line: if that line is part of a document, the
document is the previous range's, and the reader skips to the next document boundary (a blank line
for text, the next line for JSON Lines). It then reads every document that starts before ``end``,
reading past ``end`` to finish the last one.

Because documents are seeded by their content and shard contents are concatenated in read-unit
order, a file read in ranges gives the same records, in the same order, as the file read whole, or
as the same text cut into many files at document boundaries.

Compressed files (gzip, Zstandard, bzip2) cannot be entered in the middle: they stay one read unit each
(the job says so). Parquet files are split by row groups instead (``beam_jobs.parquet``).
"""

from __future__ import annotations

import io

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

MIN_SPLIT_BYTES = 1 << 20
MAX_SPLIT_BYTES = 64 << 20
# Aim for this many read units over the whole input: enough for tens of workers to share a single
# file evenly, few enough that per-unit costs (fragment files, one tokenizer flush) stay small.
TARGET_UNITS = 64
BACKWARD_BLOCK = 1 << 16
READ_BUFFER = 1 << 20


def split_size(total_bytes: int) -> int:
    """The default range size for an input of ``total_bytes`` uncompressed bytes: 1/64 of it,
    kept within 1 MiB .. 64 MiB."""
    return min(MAX_SPLIT_BYTES, max(MIN_SPLIT_BYTES, total_bytes // TARGET_UNITS))


def byte_ranges(size: int, split_bytes: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of about ``split_bytes`` covering a file of ``size`` bytes; a file no
    larger than ``split_bytes`` is one range ``(0, -1)`` (-1: to the end, whatever the size then)."""
    if size <= split_bytes:
        return [(0, -1)]
    count = -(-size // split_bytes)
    step = -(-size // count)
    starts = list(range(0, size, step))
    return [(start, starts[number + 1] if number + 1 < len(starts) else -1)
            for number, start in enumerate(starts)]


def lines_from(path: str, start: int):
    """Opens an uncompressed file at ``start``; returns ``(previous, lines)``.

    ``previous`` is the whole line just before the first line that starts at or after ``start``
    (raw bytes, newline stripped), or None when ``start`` is 0. ``lines`` yields ``(offset, raw
    line)`` for every line from there to the end of the file, newline stripped; the caller stops
    reading where its range ends.
    """
    handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    previous = None
    if start > 0:
        line_start = _start_of_line_holding(handle, start - 1)
        handle.seek(line_start)
        buffered = io.BufferedReader(handle, buffer_size=READ_BUFFER)
        previous_raw = buffered.readline()
        offset = line_start + len(previous_raw)
        previous = previous_raw.rstrip(b"\r\n")
    else:
        buffered = io.BufferedReader(handle, buffer_size=READ_BUFFER)
        offset = 0
    return previous, _numbered_lines(buffered, offset)


def _numbered_lines(buffered, offset: int):
    with buffered:
        for raw in buffered:
            yield offset, raw.rstrip(b"\r\n")
            offset += len(raw)


def _start_of_line_holding(handle, position: int) -> int:
    """Offset of the first byte of the line that holds byte ``position`` (scanning backwards)."""
    end = position  # the byte at ``position`` may be that line's own newline: search before it
    while end > 0:
        begin = max(0, end - BACKWARD_BLOCK)
        handle.seek(begin)
        block = handle.read(end - begin)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return begin + newline + 1
        end = begin
    return 0
