"""The preprocessing job as a Python API: validate, build the Beam graph, run, commit.

    read units -> (``bert`` only: UnitsAfterPool, which samples, tokenizes and writes the
      random-document pool, then releases the units) -> Reshuffle -> ProcessUnits (read, normalize,
      split, tokenize, build instances, write fragments; one unit per call) -> MergeShards
      -> job_stats.json

Output directory after a successful run::

    data-00000-of-000KK.tfrecord[.gz] ...   the shards
    heldout-00000-of-000HH.tfrecord[.gz]    only with --heldout-fraction: the held-out documents' records
    vocab.txt                               only with --learn-vocab
    manifest.json                           written last: its presence means the output is complete

A run first removes any previous manifest, shards and scratch directory, so a rerun after a kill
produces the same complete output. Every check on the inputs and vocabulary happens before
anything is written.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import math
import posixpath
import time
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

import storage
from beam_jobs import checksums, features
from beam_jobs.manifest import FILE_NAME as MANIFEST_FILE
from beam_jobs.manifest import GZIP, Heldout, Inputs, Manifest, Shard, Vocabulary
from beam_jobs.pool import UnitsAfterPool, pool_file
from beam_jobs.progress import ProgressReporter
from beam_jobs.read import expand_inputs
from beam_jobs.records import ReadUnit, merge_stats
from beam_jobs.runners import pipeline_options, running
from beam_jobs.tokenize import read_vocabulary
from beam_jobs.units import Destination, ProcessUnits
from beam_jobs.vocab import learn_vocabulary
from beam_jobs.write import MergeShards, create_raw, read_json, shard_name, write_json, write_text_atomic
from configs.errors import TrimbertError
from configs.schema import DataConfig

VOCAB_FILE = "vocab.txt"
SCRATCH_DIR = ".preprocess-tmp"
SCRATCH_FOLDERS = ("fragments", "heldout-fragments", "shards", "vocab", "progress")
SHARD_PREFIX = "data"
HELDOUT_PREFIX = "heldout"


@dataclasses.dataclass(frozen=True)
class PreprocessJob:
    """Everything one preprocessing run needs besides Beam's own options.

    Args:
        inputs: globs, or ``tfds:NAME/CONFIG[:split]`` names.
        output: output directory (local or a Beam filesystem such as gs://).
        data: format, seq_len, masking, dupe_factor, lower_case and seed.
        vocab: an existing vocab.txt; exactly one of ``vocab`` and ``learn_vocab``.
        learn_vocab: learn a WordPiece vocabulary of this size and write vocab.txt.
        shards: number of output shards.
        compress: gzip the shards (TFRecordDataset compression_type="GZIP").
        text_field: JSON Lines key holding the text.
        allow_empty: commit a manifest even when no example was produced (otherwise an error).
        split_bytes: read uncompressed files larger than this in byte ranges of about this size, one
            read unit each; None picks it from the input size (``beam_jobs.ranges``).
        progress_seconds: seconds between the driver's progress lines.
        heldout_fraction: hold this share of the documents out of training, chosen by a seeded hash of
            their content (``records.held_out``), and write their records to held-out shards for
            evaluation; 0 holds none out.
    """

    inputs: tuple[str, ...]
    output: str
    data: DataConfig = DataConfig()
    vocab: str | None = None
    learn_vocab: int | None = None
    shards: int = 8
    compress: bool = False
    text_field: str = "text"
    allow_empty: bool = False
    split_bytes: int | None = None
    progress_seconds: float = 30.0
    heldout_fraction: float = 0.0

    @property
    def heldout_shards(self) -> int:
        """Held-out shards: the training shards' share, at least one."""
        return max(1, math.ceil(self.shards * self.heldout_fraction))

    def validate(self) -> None:
        self.data.validate("preprocess")
        if (self.vocab is None) == (self.learn_vocab is None):
            raise TrimbertError("give exactly one of --vocab FILE and --learn-vocab SIZE")
        if self.learn_vocab is not None and self.learn_vocab < len(features.SPECIAL_TOKENS) + 1:
            raise TrimbertError(
                f"--learn-vocab must be > {len(features.SPECIAL_TOKENS)}, got {self.learn_vocab}")
        if self.shards < 1:
            raise TrimbertError(f"--shards must be >= 1, got {self.shards}")
        if self.progress_seconds <= 0:
            raise TrimbertError(f"--progress-seconds must be > 0, got {self.progress_seconds}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise TrimbertError(f"--heldout-fraction must be in [0, 1), got {self.heldout_fraction}")


def build(pipeline: beam.Pipeline, job: PreprocessJob, units: Sequence[ReadUnit], tokens: list[str],
          scratch: str):
    """Adds the preprocessing graph to ``pipeline``; returns the PCollection of the stats file written.

    One chain that ends in a single last step, every branch joined by a Flatten before it: the Dask
    runner computes only the last step and what it depends on. For ``bert`` the units pass through
    :class:`beam_jobs.pool.UnitsAfterPool` first, which writes the random-document pool.

    Args:
        pipeline: the Beam pipeline.
        job: the validated job.
        units: read units from :func:`beam_jobs.read.expand_inputs`.
        tokens: the vocabulary.
        scratch: the job's scratch directory.
    """
    config = job.data
    pool = pool_file(scratch) if config.format == "bert" else None
    read_units = pipeline | "Units" >> beam.Create(list(units))
    if pool is not None:
        read_units = read_units | "AfterPool" >> UnitsAfterPool(units, tokens, config.lower_case, config.seed,
                                                                job.text_field, pool, job.heldout_fraction)
    training = Destination(posixpath.join(scratch, "fragments"), job.shards)
    heldout = Destination(posixpath.join(scratch, "heldout-fragments"), job.heldout_shards)
    results = (read_units
               | "ReshuffleUnits" >> beam.Reshuffle()
               | "ProcessUnits" >> ProcessUnits(config, tokens, list(units), job.text_field, training, heldout,
                                                job.heldout_fraction, pool, posixpath.join(scratch, "progress"),
                                                job.progress_seconds))
    merged = (results
              | "Fragments" >> beam.FlatMap(lambda result: result.fragments)
              | "MergeShards" >> MergeShards(scratch, SHARD_PREFIX, job.shards, job.compress))
    reports = [merged]
    if job.heldout_fraction:
        reports.append(results
                       | "HeldoutFragments" >> beam.FlatMap(lambda result: result.heldout_fragments)
                       | "MergeHeldout" >> MergeShards(scratch, HELDOUT_PREFIX, job.heldout_shards, job.compress,
                                                       report_stats=False))
    unit_stats = results | "UnitStats" >> beam.Map(lambda result: {"stats": result.stats})
    stats_path = posixpath.join(scratch, "job_stats.json")
    return ((*reports, unit_stats)
            | "FlattenReports" >> beam.Flatten()
            | "OneKey" >> beam.Map(lambda report: (None, report))
            | "GatherReports" >> beam.GroupByKey()
            | "WriteStats" >> beam.MapTuple(lambda _, reports: _write_job_stats(stats_path, reports)))


def _write_job_stats(path: str, reports) -> str:
    reports = list(reports)
    totals = merge_stats(report["stats"] for report in reports)
    shards = sorted((report["shard"] for report in reports if "shard" in report), key=lambda shard: shard["name"])
    write_json(path, {"stats": totals, "shards": shards})
    return path


def run(job: PreprocessJob, beam_args: Sequence[str] = ()) -> dict:
    """Runs the whole job and returns the manifest it wrote, as JSON data (``Manifest.to_json``).

    Args:
        job: what to read, how to tokenize and build instances, where to write.
        beam_args: Beam pipeline options (``--runner``, ``--direct_num_workers``, ``--project`` ...).

    Raises:
        TrimbertError: a bad input, vocabulary or option, before anything is written; an input file
            found corrupt while read (a truncated compressed file), or no example produced (unless
            ``job.allow_empty``), after which no manifest and no shards remain.
    """
    job.validate()
    started = time.monotonic()
    units = expand_inputs(list(job.inputs), split_bytes=job.split_bytes, text_field=job.text_field)
    tokens = read_vocabulary(job.vocab) if job.vocab else None
    options = pipeline_options(beam_args)
    scratch = posixpath.join(job.output, SCRATCH_DIR)
    _clear_previous_output(job.output, scratch)
    vocab_path = job.vocab
    if tokens is None:
        try:
            tokens = learn_vocabulary(options, units, job.data.lower_case, job.learn_vocab,
                                      posixpath.join(scratch, "vocab"), job.text_field)
        except TrimbertError:
            FileSystems.delete([scratch])  # no words: leave no scratch that looks like a run in progress
            raise
        vocab_path = posixpath.join(job.output, VOCAB_FILE)
        with FileSystems.create(vocab_path) as handle:
            handle.write(("\n".join(tokens) + "\n").encode("utf-8"))
        logging.info("preprocess: wrote a %d-token vocabulary to %s", len(tokens), vocab_path)
    all_options = options.get_all_options()
    logging.info("preprocess: %d read units from %d inputs, %s format, %d shards, runner %s (%s, %s workers)",
                 len(units), len({unit.source for unit in units}), job.data.format, job.shards,
                 all_options.get("runner") or "FnApiRunner", all_options.get("direct_running_mode"),
                 all_options.get("direct_num_workers"))
    with ProgressReporter(posixpath.join(scratch, "progress"), job.progress_seconds) as progress:
        bert = job.data.format == "bert"
        progress.phase = "sampling the pool, then building instances" if bert else "building instances"
        try:
            with running(options) as pipeline:
                build(pipeline, job, units, tokens, scratch)
        except TrimbertError:
            FileSystems.delete([scratch])  # a corrupt input: no scratch that looks like a run in progress
            raise
    manifest = _commit(job, units, tokens, vocab_path, scratch)
    elapsed = time.monotonic() - started
    # Two token counts, both in the manifest: "tokens" counts the records' real tokens ([CLS] and
    # [SEP] included, each bert pass counted again); stats.tokens counts the documents' WordPiece tokens.
    logging.info("preprocess: %d examples holding %d tokens (manifest tokens: [CLS]/[SEP] included, every "
                 "pass counted) from %d documents of %d WordPiece tokens (manifest stats.tokens) in %.1f s",
                 manifest.examples, manifest.tokens, manifest.stats["documents"], manifest.stats["tokens"],
                 elapsed)
    return manifest.to_json()


def _clear_previous_output(output: str, scratch: str) -> None:
    manifest = posixpath.join(output, MANIFEST_FILE)
    stale = [manifest, storage.staging_path(manifest)]
    if FileSystems.exists(output):
        for prefix in (SHARD_PREFIX, HELDOUT_PREFIX):
            old_shards = posixpath.join(output, f"{prefix}-*-of-*.tfrecord*")
            stale += [match.path for match in FileSystems.match([old_shards])[0].metadata_list]
    stale += [scratch] if FileSystems.exists(scratch) else []
    FileSystems.delete([path for path in stale if FileSystems.exists(path)])
    if not FileSystems.exists(output):
        FileSystems.mkdirs(output)
    for directory in SCRATCH_FOLDERS:
        FileSystems.mkdirs(posixpath.join(scratch, directory))


def _commit(job: PreprocessJob, units: Sequence[ReadUnit], tokens: list[str], vocab_path: str,
            scratch: str) -> Manifest:
    report = read_json(posixpath.join(scratch, "job_stats.json"))
    totals: dict[str, int] = report["stats"]
    written = {shard["name"]: shard for shard in report["shards"]}
    training = [shard for name, shard in written.items() if name.startswith(SHARD_PREFIX + "-")]
    _check_example_count(job, summarize_stats(totals), sum(shard["examples"] for shard in training), scratch)
    shards = _place_shards(job, SHARD_PREFIX, job.shards, written, scratch)
    heldout = None
    if job.heldout_fraction:
        heldout_shards = _place_shards(job, HELDOUT_PREFIX, job.heldout_shards, written, scratch)
        heldout = Heldout(fraction=job.heldout_fraction, examples=sum(shard.examples for shard in heldout_shards),
                          tokens=sum(shard.tokens for shard in heldout_shards), shards=heldout_shards)
        if heldout.examples == 0:
            logging.warning("preprocess: --heldout-fraction %s held out no document; no held-out evaluation "
                            "is possible on this data", job.heldout_fraction)
    config = job.data
    manifest = Manifest(
        directory=job.output, format=config.format, seq_len=config.seq_len,
        max_predictions=config.max_predictions if config.format == "bert" else None,
        data_config=dataclasses.asdict(config), seed=config.seed, compression=GZIP if job.compress else "",
        vocabulary=Vocabulary(path=vocab_path, size=len(tokens), sha256=features.vocabulary_sha256(tokens),
                              learned=job.learn_vocab is not None),
        # A file read in byte ranges is listed once.
        inputs=Inputs(patterns=tuple(job.inputs),
                      sources=tuple(dict.fromkeys(unit.source + (f"[{unit.split}]" if unit.split else "")
                                                  for unit in units))),
        examples=sum(shard.examples for shard in shards), tokens=sum(shard.tokens for shard in shards),
        shards=shards, stats=summarize_stats(totals), heldout=heldout)
    FileSystems.delete([posixpath.join(scratch, d) for d in (*SCRATCH_FOLDERS, "job_stats.json", "pool.json")
                        if FileSystems.exists(posixpath.join(scratch, d))])
    write_text_atomic(posixpath.join(job.output, MANIFEST_FILE), manifest.to_text())  # last: the output is complete
    FileSystems.delete([scratch])
    return manifest


def _place_shards(job: PreprocessJob, prefix: str, count: int, written: dict[str, dict],
                  scratch: str) -> tuple[Shard, ...]:
    """Moves the merged shards named ``prefix-*`` into the output (writing a valid empty file for a
    shard no record hashed to); returns them in order, with their lengths and CRC-32Cs."""
    shards = []
    for index in range(count):
        name = shard_name(prefix, index, count, job.compress)
        source = posixpath.join(scratch, "shards", name)
        if name not in written:
            empty = gzip.compress(b"", mtime=0) if job.compress else b""
            with create_raw(source) as handle:
                handle.write(empty)
            written[name] = {"examples": 0, "tokens": 0, "bytes": len(empty), "crc32c": checksums.crc32c(empty)}
        FileSystems.rename([source], [posixpath.join(job.output, name)])
        shard = written[name]
        shards.append(Shard(name=name, examples=shard["examples"], tokens=shard["tokens"], bytes=shard["bytes"],
                            crc32c=shard["crc32c"]))
    return tuple(shards)


def _check_example_count(job: PreprocessJob, stats: dict, examples: int, scratch: str) -> None:
    """Refuses to commit an empty output (it would look complete and stall pre-training)."""
    if examples == 0 and not job.allow_empty:
        # Shards written so far hold nothing: remove them so no half-output looks like data.
        FileSystems.delete([scratch])
        raise TrimbertError(
            f"no pre-training example produced from {', '.join(job.inputs)} ({describe_counts(stats)}); "
            f"nothing written to {job.output}. Pass --allow-empty to write an empty output anyway")
    if examples < job.shards:
        logging.warning("preprocess: only %d example(s) for %d shards: %d shard(s) will be empty",
                        examples, job.shards, job.shards - examples)


def describe_counts(stats: dict) -> str:
    """The counts that explain a small output: files, documents read and skipped (with reasons), tokens."""
    skipped = stats["skipped_documents"]
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.items()))
    return (f"files {stats['files']} ({stats['empty_files']} empty), documents kept {stats['documents']}, "
            f"documents skipped {sum(skipped.values())}{f' ({reasons})' if reasons else ''}, "
            f"bytes read {stats['bytes_read']}, invalid UTF-8 lines {stats['invalid_utf8_lines']}, "
            f"tokens {stats['tokens']}")


def summarize_stats(totals: dict[str, int]) -> dict:
    """Flat dotted counts -> the manifest's nested ``stats`` (rates, histogram, skip reasons)."""
    nested: dict = {"length_histogram": {}, "skipped_documents": {}, "skipped_bytes": {}}
    for key, value in sorted(totals.items()):
        group, _, name = key.partition(".")
        if name and group in nested:
            nested[group][name] = value
        elif key not in ("examples", "example_tokens"):
            nested[key] = value
    for name in ("files", "empty_files", "documents", "bytes_read", "invalid_utf8_lines",
                 "invalid_utf8_characters", "tokens", "unknown_tokens", "heldout_documents"):
        nested.setdefault(name, 0)
    nested["unknown_token_rate"] = nested["unknown_tokens"] / nested["tokens"] if nested["tokens"] else 0.0
    nested["length_histogram"] = dict(sorted(nested["length_histogram"].items(),
                                             key=lambda item: int(item[0].split("-")[0])))
    return nested
