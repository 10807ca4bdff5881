"""Writing shards without holding the data anywhere, then committing them last.

Records stream from the builder into *fragment* files, one per (read unit, shard), written by the
worker that built them (bounded memory: an open file per shard). Only fragment names and counts
cross the shuffle: fragments are grouped by shard and concatenated in (unit, part) order into the
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
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window

from beam_jobs.features import frame_record
from beam_jobs.instances import Instance
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


class _WriteFragmentsFn(beam.DoFn):
    def __init__(self, fragment_dir: str, seq_len: int) -> None:
        self._fragment_dir, self._seq_len = fragment_dir, seq_len

    def start_bundle(self) -> None:
        self._unit: int | None = None
        self._parts: dict[int, int] = {}
        self._open: dict[int, tuple] = {}

    def process(self, instance: Instance):
        if instance.unit != self._unit:
            yield from self._close_all()
            self._unit = instance.unit
        if instance.shard not in self._open:
            # Parts never overwrite each other inside one attempt; a retried bundle rewrites the
            # same names with the same bytes.
            part = self._parts.get((instance.unit, instance.shard), 0)
            self._parts[(instance.unit, instance.shard)] = part + 1
            path = posixpath.join(self._fragment_dir,
                                  f"unit-{instance.unit:07d}-shard-{instance.shard:05d}-part-{part:03d}")
            self._open[instance.shard] = (create_raw(path), path, part, Stats())
        handle, _, _, stats = self._open[instance.shard]
        handle.write(frame_record(instance.payload))
        stats["examples"] += 1
        stats["example_tokens"] += instance.length
        stats[f"length_histogram.{length_bucket(instance.length, self._seq_len)}"] += 1

    def finish_bundle(self):
        for fragment in self._close_all():
            yield window.GlobalWindows.windowed_value(fragment)

    def _close_all(self):
        for shard, (handle, path, part, stats) in sorted(self._open.items()):
            handle.close()
            yield shard, (self._unit, part, path, dict(stats))
        self._open = {}


class _MergeShardFn(beam.DoFn):
    def __init__(self, shard_dir: str, prefix: str, shards: int, compressed: bool) -> None:
        self._shard_dir, self._prefix = shard_dir, prefix
        self._shards, self._compressed = shards, compressed

    def process(self, element):
        shard, fragments = element
        name = shard_name(self._prefix, shard, self._shards, self._compressed)
        stats = Stats()
        with create_raw(posixpath.join(self._shard_dir, name)) as raw:
            # mtime=0 and no file name keep gzip output byte-identical across runs.
            out = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") if self._compressed else raw
            for _, _, path, fragment_stats in sorted(fragments, key=lambda f: (f[0], f[1])):
                stats.update(fragment_stats)
                with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                    while block := handle.read(COPY_BYTES):
                        out.write(block)
            if self._compressed:
                out.close()
        yield {"name": name, "examples": stats["examples"], "tokens": stats["example_tokens"]}
        yield beam.pvalue.TaggedOutput("stats", dict(stats))


class WriteShards(beam.PTransform):
    """PCollection[Instance] -> PCollection[dict] with one {name, examples, tokens} per non-empty
    shard, plus stats tagged ``stats``; shards land in ``temporary_dir/shards``.

    Args:
        temporary_dir: the job's scratch directory (deleted by the driver on commit).
        prefix: shard file name prefix.
        shards: number of shards.
        seq_len: for the length histogram.
        compressed: gzip the shards.
    """

    def __init__(self, temporary_dir: str, prefix: str, shards: int, seq_len: int, compressed: bool,
                 label: str | None = None) -> None:
        super().__init__(label)
        self._temporary_dir, self._prefix, self._shards = temporary_dir, prefix, shards
        self._seq_len, self._compressed = seq_len, compressed

    def expand(self, instances):
        fragment_dir = posixpath.join(self._temporary_dir, "fragments")
        shard_dir = posixpath.join(self._temporary_dir, "shards")
        return (instances
                | "WriteFragments" >> beam.ParDo(_WriteFragmentsFn(fragment_dir, self._seq_len))
                | "GroupByShard" >> beam.GroupByKey()
                | "MergeFragments" >> beam.ParDo(_MergeShardFn(
                    shard_dir, self._prefix, self._shards, self._compressed)).with_outputs(
                        "stats", main="shards"))


def create_raw(path: str):
    """Opens ``path`` for writing as raw bytes (Beam would otherwise gzip any ``.gz`` name itself)."""
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def write_json(path: str, value) -> None:
    """Writes JSON through Beam's filesystems (local or remote)."""
    with FileSystems.create(path) as handle:
        handle.write((json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: str):
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode("utf-8"))
