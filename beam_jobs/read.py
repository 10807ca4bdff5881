"""Reading: input specs -> read units (checked up front) -> documents, streamed.

Accepted inputs, comma-separated globs or names:

* plain text: documents separated by blank lines, one sentence or paragraph per line (Google's
  format);
* JSON Lines (``.jsonl`` / ``.json``): one document per line, its text in ``text_field``;
* Parquet (``.parquet``, or any file starting with ``PAR1``): one document per row, its text in the
  string column ``text_field`` (``beam_jobs.parquet``);
* gzip, Zstandard and bzip2 compressed text and JSON Lines (``.gz``, ``.zst``, ``.bz2``), recognised
  by their magic bytes whatever their name; the kind comes from the name without that suffix
  (``beam_jobs.compression``);
* ``tfds:NAME/CONFIG[:split]``: a prepared TensorFlow Datasets dataset (e.g.
  ``tfds:wikipedia/20230601.en:train``), read in ``tfds_slices`` even slices.

Inside a JSON Lines, Parquet or TFDS text, line breaks (``str.splitlines``) separate sentences, and
the document is the text's non-blank stripped lines, as the lines of a plain-text document are: the
same documents give the same ``Document`` (and digest) in every format. (A plain-text line is
ended by ``\n`` only; the rarer breaks ``str.splitlines`` also knows, such as ``\x0c`` or
``\u2028``, split a JSON text but not a plain-text line.) An empty or blank text, or a Parquet null,
is skipped as ``empty_text``; a JSON Lines record whose text is null or missing as
``missing_text_field``.

An uncompressed file larger than the split size is read in byte ranges by several workers
(``beam_jobs.ranges``: no document is cut or read twice), a Parquet file in ranges of row groups;
a compressed file is one read unit.

Nothing is held beyond one document (one record batch for Parquet): a file is read line by line.
Lines that are not UTF-8 are decoded with replacement and counted; a document that is mostly
undecodable bytes or control characters is skipped as `binary`; empty files and skipped documents
are counted with reasons. A missing or non-string Parquet text column fails in
:func:`expand_inputs`, before the job writes anything; a truncated or corrupt compressed file fails
where it is read, naming the file.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import time

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs import parquet
from beam_jobs.compression import HEAD_BYTES, compression_of, open_lines, strip_suffix
from beam_jobs.ranges import byte_ranges, lines_from, split_size
from beam_jobs.records import Document, ReadUnit, Stats, content_digest
from configs.errors import TrimbertError

TFDS_PREFIX = "tfds:"
JSON_SUFFIXES = (".jsonl", ".json")
PROGRESS_SECONDS = 30.0


def expand_inputs(patterns: str | list[str], tfds_slices: int = 8, split_bytes: int | None = None,
                  text_field: str = "text") -> list[ReadUnit]:
    """Expands globs and dataset names into read units, failing at once on a bad one.

    Args:
        patterns: comma-separated string or list of globs / ``tfds:`` names.
        tfds_slices: how many even slices a TFDS split is read in (parallelism).
        split_bytes: uncompressed files larger than this are read in byte ranges of about this
            size (Parquet files in row-group ranges), one read unit each; None picks it from the
            input size (:func:`ranges.split_size`).
        text_field: the column a Parquet file must have, of a string type (checked here, from its footer).

    Raises:
        TrimbertError: naming a glob that matches nothing, a file that cannot be read, a Parquet
            file without a string ``text_field`` column, or a TFDS dataset that is not prepared.
    """
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p.strip()]
    if not patterns:
        raise TrimbertError("no --input given")
    if split_bytes is not None and split_bytes < 1:
        raise TrimbertError(f"--split-bytes must be >= 1, got {split_bytes}")
    # (source, kind, split, size, compression, Parquet row-group sizes)
    entries: list[tuple[str, str, str, int, str | None, list[int]]] = []
    seen: set[str] = set()
    for pattern in (p.strip() for p in patterns):
        if pattern.startswith(TFDS_PREFIX):
            entries += [(pattern, "tfds", split, 0, None, []) for split in _tfds_slices(pattern, tfds_slices)]
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
            head = _check_readable(path)
            if parquet.is_parquet(path, head):
                entries.append((path, "parquet", "", size, None, parquet.row_group_sizes(path, text_field)))
                continue
            kind = "jsonl" if strip_suffix(path).endswith(JSON_SUFFIXES) else "text"
            entries.append((path, kind, "", size, compression_of(head), []))
    if split_bytes is None:
        split_bytes = split_size(sum(entry[3] for entry in entries if entry[4] is None))
    units: list[ReadUnit] = []
    for source, kind, split, size, compression, groups in entries:
        if kind == "tfds":
            units.append(ReadUnit(len(units), source, kind, split))
            continue
        if compression and size > split_bytes:
            logging.info("preprocess: %s is %s-compressed (%.1f MB): one worker reads it whole, since a "
                         "compressed file cannot be entered in the middle; decompress it or cut it into "
                         "several files to spread it over workers", source, compression, size / 1e6)
        if kind == "parquet":
            ranges = parquet.group_ranges(groups, split_bytes)
        else:
            ranges = [(0, -1)] if compression else byte_ranges(size, split_bytes)
        for start, end in ranges:
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
    """The file's first bytes (a magic number or not); fails naming a file it cannot read."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            return handle.read(HEAD_BYTES)
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


def enumerate_lines(lines):
    """``(offset, line)`` for raw lines whose newline was stripped (offsets assume one ``\\n`` each;
    only compared with range ends, which a whole-file read does not have)."""
    offset = 0
    for line in lines:
        yield offset, line
        offset += len(line) + 1


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
        readers = {"text": self._read_text, "jsonl": self._read_jsonl, "parquet": self._read_parquet,
                   "tfds": self._read_tfds}
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
        # whole, or when its first range holds none and nothing but whitespace (no row) follows.
        if ordinal == binary == 0 and unit.kind != "tfds" and unit.start == 0 and (
                unit.whole_file or _nothing_after(unit)):
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
        uncompressed file, or the whole (possibly compressed) file with offsets in the decompressed text."""
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
            lines = text_lines(text)
            if lines:
                yield lines
            else:
                self._skip("empty_text", len(raw))

    def _read_parquet(self, unit: ReadUnit):
        for raw in parquet.parquet_texts(unit.source, unit.start, unit.end, self._text_field):
            lines = text_lines(self._decode(raw)) if raw is not None else []
            if lines:
                yield lines
            else:
                self._skip("empty_text", len(raw or b""))

    def _read_tfds(self, unit: ReadUnit):
        import tensorflow_datasets as tfds

        name, _ = _parse_tfds(unit.source)
        for record in tfds.load(name, split=unit.split, download=False).as_numpy_iterator():
            raw = record[self._text_field]
            text = self._decode(raw if isinstance(raw, bytes) else str(raw).encode("utf-8"))
            lines = text_lines(text)
            if lines:
                yield lines
            else:
                self._skip("empty_text", len(raw))

    def _skip(self, reason: str, size: int) -> None:
        self._stats[f"skipped_documents.{reason}"] += 1
        self._stats[f"skipped_bytes.{reason}"] += size + 1


def text_lines(text: str) -> list[str]:
    """A JSON Lines, Parquet or TFDS text as a document's lines: its non-blank lines, stripped."""
    return [part.strip() for part in text.splitlines() if part.strip()]


def _nothing_after(unit: ReadUnit) -> bool:
    """Whether the unit's file holds no more documents past the unit's end (whitespace or no row)."""
    if unit.kind == "parquet":
        return parquet.rows_from(unit.source, unit.end) == 0
    return _blank_from(unit.source, unit.end)


def _blank_from(path: str, offset: int) -> bool:
    """Whether the file holds only whitespace from byte ``offset`` on (read until it does not)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.seek(offset)
        while block := handle.read(1 << 20):
            if block.strip():
                return False
    return True
