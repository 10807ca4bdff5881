"""Reading: input specs -> read units (checked up front) -> documents, streamed.

Accepted inputs, comma-separated globs or names:

* plain text: documents separated by blank lines, one sentence or paragraph per line (Google's
  format); gzip-compressed files are recognised by their magic bytes, whatever their name;
* JSON Lines (``.jsonl`` / ``.json``, optionally ``.gz``): one document per line, its text in
  ``text_field`` (newlines inside the text separate sentences);
* ``tfds:NAME/CONFIG[:split]``: a prepared TensorFlow Datasets dataset (e.g.
  ``tfds:wikipedia/20230601.en:train``), read in ``tfds_slices`` even slices.

An uncompressed file larger than the split size is read in byte ranges by several workers
(``beam_jobs.ranges``: no document is cut or read twice); a gzip file is one read unit.

Nothing is held beyond one document: a file is read line by line. Lines that are not UTF-8 are
decoded with replacement and counted; a document that is mostly undecodable bytes or control
characters is skipped as `binary`; empty files and skipped documents are counted with reasons.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import logging
import os
import re
import time

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs.ranges import byte_ranges, lines_from, split_size
from beam_jobs.records import Document, ReadUnit, Stats, content_digest
from configs.errors import TrimbertError

TFDS_PREFIX = "tfds:"
JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
GZIP_MAGIC = b"\x1f\x8b"
PROGRESS_SECONDS = 30.0


def expand_inputs(patterns: str | list[str], tfds_slices: int = 8,
                  split_bytes: int | None = None) -> list[ReadUnit]:
    """Expands globs and dataset names into read units, failing at once on a bad one.

    Args:
        patterns: comma-separated string or list of globs / ``tfds:`` names.
        tfds_slices: how many even slices a TFDS split is read in (parallelism).
        split_bytes: uncompressed files larger than this are read in byte ranges of about this
            size, one read unit each; None picks it from the input size (:func:`ranges.split_size`).

    Raises:
        TrimbertError: naming a glob that matches nothing, a file that cannot be read, or a
            TFDS dataset that is not prepared.
    """
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p.strip()]
    if not patterns:
        raise TrimbertError("no --input given")
    if split_bytes is not None and split_bytes < 1:
        raise TrimbertError(f"--split-bytes must be >= 1, got {split_bytes}")
    entries: list[tuple[str, str, str, int, bool]] = []  # (source, kind, split, size, compressed)
    seen: set[str] = set()
    for pattern in (p.strip() for p in patterns):
        if pattern.startswith(TFDS_PREFIX):
            entries += [(pattern, "tfds", split, 0, False) for split in _tfds_slices(pattern, tfds_slices)]
            continue
        if "://" not in pattern:
            _check_local_matches(pattern)
        matches = sorted((m.path, m.size_in_bytes) for result in FileSystems.match([pattern])
                         for m in result.metadata_list)
        if not matches:
            raise TrimbertError(f"input glob matches no file: {pattern}")
        for path, size in matches:
            if path in seen:
                continue
            seen.add(path)
            compressed = _check_readable(path) == GZIP_MAGIC
            kind = "jsonl" if path.endswith(JSON_SUFFIXES) else "text"
            entries.append((path, kind, "", size, compressed))
    if split_bytes is None:
        split_bytes = split_size(sum(size for _, _, _, size, compressed in entries if not compressed))
    units: list[ReadUnit] = []
    for source, kind, split, size, compressed in entries:
        if kind == "tfds":
            units.append(ReadUnit(len(units), source, kind, split))
            continue
        if compressed and size > split_bytes:
            logging.info("preprocess: %s is gzip-compressed (%.1f MB): one worker reads it whole, since a "
                         "compressed file cannot be entered in the middle; decompress it or cut it into "
                         "several files to spread it over workers", source, size / 1e6)
        for start, end in [(0, -1)] if compressed else byte_ranges(size, split_bytes):
            units.append(ReadUnit(len(units), source, kind, "", start, end))
    return units


def _check_local_matches(pattern: str) -> None:
    # Beam's local match silently drops directories and dangling links; a corpus glob that
    # catches one is a mistake to report, not to skip.
    for path in glob.glob(pattern):
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            kind = "a directory" if os.path.isdir(path) else "missing or not readable"
            raise TrimbertError(f"input file cannot be read: {path} ({kind})")


def _check_readable(path: str) -> bytes:
    """The file's first two bytes (gzip's magic number or not); fails naming a file it cannot read."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            return handle.read(2)
    except Exception as error:  # any filesystem's error type: report the file, not a traceback
        raise TrimbertError(f"input file cannot be read: {path} ({error})") from error


def _parse_tfds(spec: str) -> tuple[str, str]:
    name, _, split = spec[len(TFDS_PREFIX):].partition(":")
    return name, split or "train"


def _tfds_slices(spec: str, slices: int) -> list[str]:
    import tensorflow_datasets as tfds

    name, split = _parse_tfds(spec)
    try:
        # Opening the split reads nothing yet, but fails at once when the data is not prepared;
        # download=False: a preprocessing job must never start a dataset download on its own.
        tfds.load(name, split=split, download=False)
    except Exception as error:
        raise TrimbertError(f"TensorFlow Datasets input {spec} cannot be loaded (is it prepared? run "
                            f"`tfds build {name}` first, or set TFDS_DATA_DIR): {error}") from error
    return list(tfds.even_splits(split, n=slices))


def open_lines(path: str):
    """Yields raw lines (bytes, newline stripped) of a file, gunzipping when the bytes say gzip."""
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    with raw:
        head = raw.read(2)
        body = io.BufferedReader(_Prefixed(head, raw), buffer_size=1 << 20)
        stream = gzip.GzipFile(fileobj=body) if head == GZIP_MAGIC else body
        for line in stream:
            yield line.rstrip(b"\r\n")


def enumerate_lines(lines):
    """``(offset, line)`` for raw lines whose newline was stripped (offsets assume one ``\\n`` each;
    only compared with range ends, which a whole-file read does not have)."""
    offset = 0
    for line in lines:
        yield offset, line
        offset += len(line) + 1


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


BINARY_CHARACTER_SHARE = 0.1
# The replacement character and the control characters other than tab, line feed and carriage return.
_SUSPICIOUS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]")


def looks_binary(text: str) -> bool:
    """True when over a tenth of ``text`` is undecodable bytes or control characters.

    Such a block is not prose (an image, an archive, a model file matched by the glob); its
    replacement characters would only become [UNK] tokens and count as training text.
    """
    if _SUSPICIOUS.search(text) is None:  # prose: one scan in C, no list
        return False
    return len(_SUSPICIOUS.findall(text)) > BINARY_CHARACTER_SHARE * len(text)


class DocumentReader:
    """Streams one read unit into documents, counting into the ``Stats`` it is given.

    Plain Python, so a step can read a whole unit inside one ``process`` call and report the
    unit's counts with its result (runners such as Dask drop what ``finish_bundle`` emits).
    """

    def __init__(self, text_field: str, log_empty_files: bool) -> None:
        self._text_field = text_field
        self._log_empty_files = log_empty_files
        self._stats = Stats()

    def documents(self, unit: ReadUnit, stats: Stats):
        """Yields the unit's documents in file order, numbered from 0; adds its counts to ``stats``."""
        self._stats = stats
        readers = {"text": self._read_text, "jsonl": self._read_jsonl, "tfds": self._read_tfds}
        stats["files"] += unit.kind != "tfds" and unit.start == 0
        ordinal = binary = 0
        last_log = time.monotonic()
        for lines in readers[unit.kind](unit):
            text = "\n".join(lines)
            if looks_binary(text):
                self._skip("binary", len(text.encode("utf-8")))
                binary += 1
                continue
            yield Document(unit.index, ordinal, content_digest(text), tuple(lines))
            ordinal += 1
            if time.monotonic() - last_log > PROGRESS_SECONDS:
                last_log = time.monotonic()
                logging.debug("preprocess: reading %s, %d documents so far", unit.source, ordinal)
        stats["documents"] += ordinal
        # One range of a split file may hold no document start: the file is "empty" when it is read
        # whole, or when its first range holds none and nothing but whitespace follows.
        if ordinal == binary == 0 and unit.kind != "tfds" and unit.start == 0 and (
                unit.whole_file or _blank_from(unit.source, unit.end)):
            stats["empty_files"] += 1
            if self._log_empty_files:
                logging.warning("preprocess: input file has no documents: %s", unit.source)

    def _decode(self, raw: bytes, owned: bool = True) -> str:
        # ``owned``: the line starts inside this unit's range, so its counts are this unit's (a line
        # read only to find a boundary, or to finish a document past the range, is counted by its owner).
        if owned:
            self._stats["bytes_read"] += len(raw) + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            if owned:
                self._stats["invalid_utf8_lines"] += 1
                self._stats["invalid_utf8_characters"] += text.count("\ufffd")
            return text

    def _lines(self, unit: ReadUnit):
        """``(previous line or None, (offset, raw line) ...)`` of the unit: its byte range of an
        uncompressed file, or the whole (possibly gzip) file with offsets in the decompressed text."""
        if unit.whole_file:
            return None, enumerate_lines(open_lines(unit.source))
        return lines_from(unit.source, unit.start)

    def _read_text(self, unit: ReadUnit):
        end = unit.end if unit.end >= 0 else float("inf")
        previous, numbered = self._lines(unit)
        # The line before the range is part of a document: that document is the previous range's.
        inside_earlier_document = previous is not None and bool(self._decode(previous, owned=False).strip())
        lines: list[str] = []
        for offset, raw in numbered:
            if not lines and offset >= end:
                break  # a document starting here belongs to the next range
            line = self._decode(raw, owned=offset < end).strip()
            if inside_earlier_document:
                inside_earlier_document = bool(line)
            elif line:
                lines.append(line)
            elif lines:
                yield lines
                lines = []
        if lines:
            yield lines

    def _read_jsonl(self, unit: ReadUnit):
        end = unit.end if unit.end >= 0 else float("inf")
        _, numbered = self._lines(unit)  # the line holding ``start`` - 1 is the previous range's
        for offset, raw in numbered:
            if offset >= end:
                break
            line = self._decode(raw).strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                self._skip("invalid_json", len(raw))
                continue
            text = record.get(self._text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                self._skip("missing_text_field", len(raw))
                continue
            lines = [part.strip() for part in text.splitlines() if part.strip()]
            if lines:
                yield lines
            else:
                self._skip("empty_text", len(raw))

    def _read_tfds(self, unit: ReadUnit):
        import tensorflow_datasets as tfds

        name, _ = _parse_tfds(unit.source)
        for record in tfds.load(name, split=unit.split, download=False).as_numpy_iterator():
            raw = record[self._text_field]
            text = self._decode(raw if isinstance(raw, bytes) else str(raw).encode("utf-8"))
            lines = [part.strip() for part in text.splitlines() if part.strip()]
            if lines:
                yield lines
            else:
                self._skip("empty_text", len(raw))

    def _skip(self, reason: str, size: int) -> None:
        self._stats[f"skipped_documents.{reason}"] += 1
        self._stats[f"skipped_bytes.{reason}"] += size + 1


def _blank_from(path: str, offset: int) -> bool:
    """Whether the file holds only whitespace from byte ``offset`` on (read until it does not)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.seek(offset)
        while block := handle.read(1 << 20):
            if block.strip():
                return False
    return True
