"""Compressed text and JSON Lines: gzip, Zstandard and bzip2, recognised by their first bytes.

A file is decompressed when it starts with a compression's magic number, whatever its name: gzip
``1f 8b``, Zstandard ``28 b5 2f fd``, bzip2 ``BZh`` followed by its block-size digit ``1``-``9``.
Whether it holds text or JSON Lines is read from its name without the compression suffix
(:func:`strip_suffix`), so ``docs.jsonl.zst`` and ``docs.json.bz2`` are JSON Lines.

A compressed stream cannot be entered in the middle, so a compressed file is one read unit. It is
decompressed as a stream, one buffer at a time, whatever its size. A truncated or corrupt file fails
where its lines are read, with a :class:`TrimbertError` naming it. Zstandard is decoded frame by
frame with ``decompressobj``, not ``stream_reader``: zstandard 0.25's ``stream_reader`` ends without
an error at a frame the input cuts short, and a truncated file would pass as a shorter one.
"""

from __future__ import annotations

import bz2
import gzip
import io
import zlib

import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from configs.errors import TrimbertError

HEAD_BYTES = 4
GZIP, ZSTD, BZIP2 = "gzip", "zstd", "bzip2"
SUFFIXES = (".gz", ".zst", ".zstd", ".bz2")
READ_BUFFER = 1 << 20
# Compressed bytes fed to the Zstandard decoder at once: its output for them is held whole.
ZSTD_INPUT_CHUNK = 1 << 16
# What the decoders raise on bad data: gzip (BadGzipFile is an OSError, zlib.error), bzip2 (OSError),
# any of them on a stream that ends early (EOFError), Zstandard (ZstdError).
DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, zstandard.ZstdError)


def compression_of(head: bytes) -> str | None:
    """The compression whose magic number starts ``head`` (a file's first bytes), or None."""
    if head.startswith(b"\x1f\x8b"):
        return GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return ZSTD
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[3:4] != b"0":
        return BZIP2
    return None


def strip_suffix(path: str) -> str:
    """``path`` without a compression suffix (``.gz``, ``.zst``, ``.zstd``, ``.bz2``)."""
    for suffix in SUFFIXES:
        if path.endswith(suffix):
            return path[:-len(suffix)]
    return path


def open_lines(path: str):
    """Yields raw lines (bytes, newline stripped) of a file, decompressed when its first bytes say so.

    Raises:
        TrimbertError: naming the file, when its compressed data is truncated or corrupt.
    """
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    with raw:
        head = raw.read(HEAD_BYTES)
        compression = compression_of(head)
        body = io.BufferedReader(_Prefixed(head, raw), buffer_size=READ_BUFFER)
        if compression is None:
            for line in body:
                yield line.rstrip(b"\r\n")
            return
        try:
            for line in _decompressed(body, compression):
                yield line.rstrip(b"\r\n")
        except DECOMPRESSION_ERRORS as error:
            raise TrimbertError(f"input file {path} cannot be decompressed as {compression} (truncated or "
                                f"corrupt?): {error}") from error


def _decompressed(body, compression: str):
    if compression == GZIP:
        return gzip.GzipFile(fileobj=body)
    if compression == BZIP2:
        return bz2.BZ2File(body)
    return io.BufferedReader(_ZstdFrames(body), buffer_size=READ_BUFFER)


class _Prefixed(io.RawIOBase):
    """A raw stream that first returns ``head`` (already read to sniff the format)."""

    def __init__(self, head: bytes, rest) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size], self._head = self._head[:size], self._head[size:]
            return size
        data = self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class _ZstdFrames(io.RawIOBase):
    """The decompressed bytes of a stream of Zstandard frames; EOFError when it ends inside a frame."""

    def __init__(self, source) -> None:
        self._source = source
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = None  # the current frame's decoder; None between frames
        self._unused = b""  # input read past the end of the last finished frame
        self._pending = memoryview(b"")  # decoded, not yet returned

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            data, self._unused = self._unused or self._source.read(ZSTD_INPUT_CHUNK), b""
            if not data:
                if self._frame is not None:
                    raise EOFError("the input ends inside a Zstandard frame")
                return 0
            if self._frame is None:
                self._frame = self._decompressor.decompressobj()
            self._pending = memoryview(self._frame.decompress(data))
            if self._frame.eof:
                self._unused, self._frame = self._frame.unused_data, None
        size = min(len(buffer), len(self._pending))
        buffer[:size], self._pending = self._pending[:size], self._pending[size:]
        return size
