"""Reading: input specs -> read units (checked up front) -> documents, streamed.

Accepted inputs, comma-separated globs or names:

* plain text: documents separated by blank lines, one sentence or paragraph per line (Google's
  format); gzip-compressed files are recognised by their magic bytes, whatever their name;
* JSON Lines (``.jsonl`` / ``.json``, optionally ``.gz``): one document per line, its text in
  ``text_field`` (newlines inside the text separate sentences);
* ``tfds:NAME/CONFIG[:split]``: a prepared TensorFlow Datasets dataset (e.g.
  ``tfds:wikipedia/20230601.en:train``), read in ``tfds_slices`` even slices.

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
import time

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs.records import Document, ReadUnit, Stats, content_digest
from configs.errors import TrimbertError

TFDS_PREFIX = "tfds:"
JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
GZIP_MAGIC = b"\x1f\x8b"
PROGRESS_SECONDS = 30.0


def expand_inputs(patterns: str | list[str], tfds_slices: int = 8) -> list[ReadUnit]:
    """Expands globs and dataset names into read units, failing at once on a bad one.

    Args:
        patterns: comma-separated string or list of globs / ``tfds:`` names.
        tfds_slices: how many even slices a TFDS split is read in (parallelism).

    Raises:
        TrimbertError: naming a glob that matches nothing, a file that cannot be read, or a
            TFDS dataset that is not prepared.
    """
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p.strip()]
    if not patterns:
        raise TrimbertError("no --input given")
    units: list[ReadUnit] = []
    seen: set[str] = set()
    for pattern in (p.strip() for p in patterns):
        if pattern.startswith(TFDS_PREFIX):
            for split in _tfds_slices(pattern, tfds_slices):
                units.append(ReadUnit(len(units), pattern, "tfds", split))
            continue
        if "://" not in pattern:
            _check_local_matches(pattern)
        matches = sorted(m.path for result in FileSystems.match([pattern]) for m in result.metadata_list)
        if not matches:
            raise TrimbertError(f"input glob matches no file: {pattern}")
        for path in matches:
            if path in seen:
                continue
            seen.add(path)
            _check_readable(path)
            kind = "jsonl" if path.endswith(JSON_SUFFIXES) else "text"
            units.append(ReadUnit(len(units), path, kind))
    return units


def _check_local_matches(pattern: str) -> None:
    # Beam's local match silently drops directories and dangling links; a corpus glob that
    # catches one is a mistake to report, not to skip.
    for path in glob.glob(pattern):
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            kind = "a directory" if os.path.isdir(path) else "missing or not readable"
            raise TrimbertError(f"input file cannot be read: {path} ({kind})")


def _check_readable(path: str) -> None:
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.read(1)
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


def looks_binary(text: str) -> bool:
    """True when over a tenth of ``text`` is undecodable bytes or control characters.

    Such a block is not prose (an image, an archive, a model file matched by the glob); its
    replacement characters would only become [UNK] tokens and count as training text.
    """
    suspicious = sum(1 for character in text
                     if character == "\ufffd" or (character < " " and character not in "\t\n\r"))
    return suspicious > BINARY_CHARACTER_SHARE * len(text)


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
        stats["files"] += unit.kind != "tfds"
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
                logging.info("preprocess: reading %s, %d documents so far", unit.source, ordinal)
        stats["documents"] += ordinal
        if ordinal == binary == 0 and unit.kind != "tfds":
            stats["empty_files"] += 1
            if self._log_empty_files:
                logging.warning("preprocess: input file has no documents: %s", unit.source)

    def _decode(self, raw: bytes) -> str:
        self._stats["bytes_read"] += len(raw) + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            self._stats["invalid_utf8_lines"] += 1
            self._stats["invalid_utf8_characters"] += text.count("\ufffd")
            return text

    def _read_text(self, unit: ReadUnit):
        lines: list[str] = []
        for raw in open_lines(unit.source):
            line = self._decode(raw).strip()
            if line:
                lines.append(line)
            elif lines:
                yield lines
                lines = []
        if lines:
            yield lines

    def _read_jsonl(self, unit: ReadUnit):
        for raw in open_lines(unit.source):
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
