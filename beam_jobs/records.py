"""The elements that flow between the preprocessing PTransforms, and the stats they report.

Every element carries its read unit and its ordinal inside that unit, so anything order-dependent
(shard contents, random seeds) is a function of the input alone, never of Beam's scheduling.
"""

from __future__ import annotations

import collections
import hashlib
from typing import NamedTuple


class ReadUnit(NamedTuple):
    """One independently readable piece of input.

    Args:
        index: position in the sorted input list; orders shard contents.
        source: a file path, or ``tfds:NAME/CONFIG`` for TensorFlow Datasets.
        kind: ``text`` (blank-line separated documents), ``jsonl``, ``parquet`` or ``tfds``.
        split: the TensorFlow Datasets split slice (``tfds`` only, else "").
        start: first byte of the range this unit reads (``beam_jobs.ranges``); 0 for a whole file.
            For ``parquet``, the first row group it reads (``beam_jobs.parquet``).
        end: byte where the range ends (its last document may run past it); -1: the end of the file.
            For ``parquet``, the row group it stops before; -1: after the last one.
    """

    index: int
    source: str
    kind: str
    split: str = ""
    start: int = 0
    end: int = -1

    @property
    def whole_file(self) -> bool:
        return self.start == 0 and self.end < 0


class Document(NamedTuple):
    """A document as lines of text (sentences after ``SplitSentences``).

    Args:
        unit: index of the read unit it came from.
        ordinal: position of the document inside its unit.
        digest: hex blake2b of the document's raw text; seeds its random choices.
        lines: the document's lines, or sentences once split.
    """

    unit: int
    ordinal: int
    digest: str
    lines: tuple[str, ...]


class TokenizedDocument(NamedTuple):
    """A document as WordPiece ids, one list per sentence (empty sentences dropped)."""

    unit: int
    ordinal: int
    digest: str
    sentences: tuple[tuple[int, ...], ...]


def content_digest(text: str) -> str:
    """Short stable digest of a document's text (not Python's salted ``hash``)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def stable_hash(*parts: object) -> int:
    """64-bit integer hash of the parts' ``repr``; equal across processes and machines."""
    text = "\x1f".join(repr(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def held_out(digest: str, seed: int, fraction: float) -> bool:
    """Whether the document with this digest is held out of training (``--heldout-fraction``).

    A seeded hash of its content, so every copy of a document falls on the same side, whatever file
    or read unit it is in."""
    return fraction > 0 and stable_hash(seed, digest, "heldout") < fraction * 2.0 ** 64


class Stats(collections.Counter):
    """Integer counts keyed by dotted names (``skipped_documents.empty``); sums across workers."""


def merge_stats(parts) -> dict[str, int]:
    """CombineGlobally function: sums stats dicts."""
    total: collections.Counter = collections.Counter()
    for part in parts:
        total.update(part)
    return dict(total)
