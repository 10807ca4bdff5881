"""Writing shards without holding the data anywhere, then committing them last.

Records stream from the builder into *fragment* files, one per (read unit, shard), written by the
worker that built them (bounded memory: an open file per shard). Only fragment names and counts
cross the shuffle: fragments are grouped by shard and concatenated in unit order into the
shard, under a temporary directory. TFRecord framing is self-delimiting, so concatenation is a valid
TFRecord file; ``--gzip`` compresses the concatenation (what TFRecordDataset's "GZIP" reads).
The driver then renames the finished shards into place, writes ``manifest.json`` last and deletes the
scratch directory; fragments stay until then, so a retried merge finds them again.

Why not Reshuffle the records themselves: on the direct runner a shuffle is held in the runner's
memory, which would make peak memory grow with the corpus (the peers' complaint). Work is
rebalanced by reshuffling the read units instead, before the heavy fused stage.
"""

from __future__ import annotations

import gzip
import json
import posixpath

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

import storage
from beam_jobs.checksums import CountingWriter
from beam_jobs.instances import Records
from beam_jobs.records import Stats

HISTOGRAM_BUCKETS = 8
COPY_BYTES = 1 << 22


def shard_name(prefix: str, shard: int, shards: int, compressed: bool) -> str:
    """``data-00003-of-00016.tfrecord[.gz]``."""
    return f"{prefix}-{shard:05d}-of-{shards:05d}.tfrecord" + (".gz" if compressed else "")


def length_bucket(length: int, seq_len: int) -> str:
    """Histogram bucket label of a record's real length: ``1-16``, ``17-32`` ... (8 buckets)."""
    width = -(-seq_len // HISTOGRAM_BUCKETS)
    low = (length - 1) // width * width
    return f"{low + 1}-{min(low + width, seq_len)}"


class FragmentWriter:
    """Streams one read unit's records into one fragment file per shard it touches.

    A fragment's name is a function of (unit, shard) only, and its bytes of the unit's input only,
    so a step that a runner executes again (Dask recomputes lost or shared work) overwrites the same
    file with the same bytes instead of leaving a second copy behind.

    Args:
        fragment_dir: the scratch folder for fragments.
        unit: the read unit being written.
        seq_len: for the length histogram.
    """

    def __init__(self, fragment_dir: str, unit: int, seq_len: int) -> None:
        self._fragment_dir, self._unit, self._seq_len = fragment_dir, unit, seq_len
        self._open: dict[int, tuple] = {}

    def write(self, records: Records) -> None:
        """Appends framed records to the unit's fragment of their shard."""
        if records.shard not in self._open:
            path = posixpath.join(self._fragment_dir, f"unit-{self._unit:07d}-shard-{records.shard:05d}")
            self._open[records.shard] = (create_raw(path), path, Stats())
        handle, _, stats = self._open[records.shard]
        handle.write(records.data)
        lengths = records.lengths
        stats["examples"] += len(lengths)
        stats["example_tokens"] += int(lengths.sum())
        width = -(-self._seq_len // HISTOGRAM_BUCKETS)
        for bucket, count in enumerate(np.bincount((lengths - 1) // width).tolist()):
            if count:
                stats[f"length_histogram.{length_bucket(bucket * width + 1, self._seq_len)}"] += count

    def close(self) -> list[tuple[int, tuple[int, str, dict]]]:
        """Closes every fragment; returns ``(shard, (unit, path, stats))`` for each, by shard."""
        fragments = []
        for shard, (handle, path, stats) in sorted(self._open.items()):
            handle.close()
            fragments.append((shard, (self._unit, path, dict(stats))))
        self._open = {}
        return fragments


class _MergeShardFn(beam.DoFn):
    def __init__(self, shard_dir: str, prefix: str, shards: int, compressed: bool, report_stats: bool) -> None:
        self._shard_dir, self._prefix = shard_dir, prefix
        self._shards, self._compressed, self._report_stats = shards, compressed, report_stats

    def process(self, element):
        shard, fragments = element
        name = shard_name(self._prefix, shard, self._shards, self._compressed)
        stats = Stats()
        with create_raw(posixpath.join(self._shard_dir, name)) as handle:
            raw = CountingWriter(handle)  # the file's length and CRC-32C, as stored (after gzip)
            # mtime=0 and no file name keep gzip output byte-identical across runs.
            out = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") if self._compressed else raw
            # A fragment's name is a function of (unit, shard): should a runner hand the same fragment
            # over twice, it is one file and is copied once.
            unique = {(unit, path): fragment_stats for unit, path, fragment_stats in fragments}
            for (_, path), fragment_stats in sorted(unique.items()):
                stats.update(fragment_stats)
                with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                    while block := handle.read(COPY_BYTES):
                        out.write(block)
            if self._compressed:
                out.close()
        yield {"shard": {"name": name, "examples": stats["examples"], "tokens": stats["example_tokens"],
                         "bytes": raw.bytes, "crc32c": raw.crc32c},
               "stats": dict(stats) if self._report_stats else {}}


class MergeShards(beam.PTransform):
    """PCollection[(shard, (unit, fragment path, stats))] -> one ``{"shard": {name, examples, tokens,
    bytes, crc32c}, "stats": ...}`` per non-empty shard; the shard is the concatenation of its fragments
    in unit order, written to ``temporary_dir/shards``; ``bytes`` and ``crc32c`` are the file's as
    written (``beam_jobs.checksums``), which the driver's rename into place keeps.

    Args:
        temporary_dir: the job's scratch directory (deleted by the driver on commit).
        prefix: shard file name prefix.
        shards: number of shards.
        compressed: gzip the shards.
        report_stats: add the records' counts (examples, length histogram) to the job's stats; the
            held-out shards' are reported in the manifest's ``heldout`` section only.
    """

    def __init__(self, temporary_dir: str, prefix: str, shards: int, compressed: bool, report_stats: bool = True,
                 label: str | None = None) -> None:
        super().__init__(label)
        self._temporary_dir, self._prefix = temporary_dir, prefix
        self._shards, self._compressed, self._report_stats = shards, compressed, report_stats

    def expand(self, fragments):
        shard_dir = posixpath.join(self._temporary_dir, "shards")
        return (fragments
                | "GroupByShard" >> beam.GroupByKey()
                | "MergeFragments" >> beam.ParDo(_MergeShardFn(
                    shard_dir, self._prefix, self._shards, self._compressed, self._report_stats)))


def create_raw(path: str):
    """Opens ``path`` for writing as raw bytes (Beam would otherwise gzip any ``.gz`` name itself)."""
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def write_text(path: str, text: str) -> None:
    """Writes UTF-8 text through Beam's filesystems (local or remote)."""
    with FileSystems.create(path) as handle:
        handle.write(text.encode("utf-8"))


def write_json(path: str, value) -> None:
    """Writes indented JSON with sorted keys through Beam's filesystems."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path: str, text: str) -> None:
    """:func:`write_text` so that a reader sees no file or the whole one (``storage.staging_path``'s rule)."""
    staging = storage.staging_path(path)
    write_text(staging, text)
    if staging != path:
        FileSystems.rename([staging], [path])


def read_json(path: str):
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode("utf-8"))
