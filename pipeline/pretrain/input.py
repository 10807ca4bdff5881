"""tf.data input for pre-training, over the shards a Beam job's manifest lists.

decode (tf.Example -> tensors, int64 -> int32 once) is kept apart from parse
(-> the model's feature names), as in TF Model Garden. Files are sharded per
input pipeline (one per worker), interleaved, shuffled with a fixed seed,
repeated, batched to the per-replica size and prefetched. ``packed`` data is
masked dynamically, each example from a seed of its place in the stream
(``pipeline.pretrain.masking``); ``bert`` data (ours or Google's) is read as written.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

import storage
from beam_jobs import features
from configs.errors import TrimbertError
from pipeline.pretrain.masking import MaskingSpec, mask_batch

MODEL_INPUTS = ("token_ids", "segment_ids", "padding_mask", "mask_positions")
LABELS = ("masked_lm_ids", "masked_lm_weights", "next_sentence_labels")


@dataclasses.dataclass(frozen=True)
class DataManifest:
    """What the reader needs from a Beam job's ``manifest.json``."""

    directory: str
    format: str
    seq_len: int
    max_predictions: int
    shards: tuple[str, ...]
    compressed: bool
    examples: int
    vocabulary_size: int
    vocabulary_sha256: str
    vocabulary_path: str | None
    schema_fingerprint: str
    shard_examples: tuple[int, ...] = ()

    @property
    def readable_vocabulary(self) -> str | None:
        """The vocabulary file when it can be read (to copy into exports), else None."""
        path = self.vocabulary_path
        return path if path and storage.isfile(path) else None

    @classmethod
    def read(cls, directory: str | os.PathLike) -> DataManifest:
        directory = os.fspath(directory)
        path = storage.join(directory, "manifest.json")
        if not storage.isfile(path):
            raise TrimbertError(f"{directory}: no manifest.json; is the preprocessing finished? "
                                f"(shards are only complete once the manifest exists)")
        try:
            raw = storage.read_json(path)
            shards = tuple(storage.join(directory, shard["name"]) for shard in raw["shards"])
            manifest = cls(
                directory=directory, format=raw["format"], seq_len=int(raw["seq_len"]),
                max_predictions=int(raw.get("max_predictions") or 0), shards=shards,
                compressed=bool(raw.get("gzip", False)), examples=int(raw["examples"]),
                vocabulary_size=int(raw["vocab"]["size"]), vocabulary_sha256=raw["vocab"]["sha256"],
                vocabulary_path=_vocabulary_path(directory, raw["vocab"].get("path")),
                schema_fingerprint=raw["schema_fingerprint"],
                shard_examples=tuple(int(shard["examples"]) for shard in raw["shards"]))
        except (KeyError, TypeError, ValueError) as error:
            raise TrimbertError(f"{path}: malformed manifest, field {error} missing or wrong") from error
        missing = [storage.name(shard) for shard in manifest.shards if not storage.isfile(shard)]
        if missing:
            raise TrimbertError(f"{path}: lists shards that are missing: {', '.join(missing[:3])}")
        expected = features.schema_fingerprint(manifest.format, manifest.seq_len, manifest.max_predictions)
        if expected != manifest.schema_fingerprint:
            raise TrimbertError(f"{path}: schema fingerprint {manifest.schema_fingerprint[:12]} does not "
                                f"match this reader's {expected[:12]} for format {manifest.format}")
        return manifest

    def check_enough_examples(self, batch_size: int, where: str) -> None:
        """Fails unless one global batch can be drawn: the stream repeats, so an empty one would spin."""
        if self.examples < batch_size:
            raise TrimbertError(
                f"{self.directory}: {self.examples} example(s) in {len(self.shards)} shard(s), fewer than "
                f"{where} batch_size {batch_size}; preprocess more text or lower the batch size")

    def pipeline_examples(self, pipelines: int, pipeline_id: int) -> int:
        """Examples one of ``pipelines`` input pipelines reads (see the file sharding below)."""
        if len(self.shards) < pipelines or len(self.shard_examples) != len(self.shards):
            return self.examples // pipelines  # records are split evenly, or no per-shard count
        return sum(self.shard_examples[pipeline_id::pipelines])

    def check_vocabulary(self, vocabulary_size: int, vocabulary_sha256: str | None = None) -> None:
        """Fails unless the model's vocabulary is the one the data was tokenized with."""
        if vocabulary_size != self.vocabulary_size:
            raise TrimbertError(
                f"{self.directory}/manifest.json: vocabulary size {self.vocabulary_size} does not match "
                f"the model's model.vocabulary_size {vocabulary_size}")
        if vocabulary_sha256 and vocabulary_sha256 != self.vocabulary_sha256:
            raise TrimbertError(
                f"{self.directory}/manifest.json: vocabulary sha256 {self.vocabulary_sha256[:12]}... differs "
                f"from the model's {vocabulary_sha256[:12]}... (same size, different tokens)")


def _vocabulary_path(directory: str, recorded: str | None) -> str | None:
    """The manifest's vocab path as written, else the file of that name beside the data."""
    if not recorded:
        return None
    return recorded if storage.isfile(recorded) else storage.join(directory, storage.name(recorded))


def decode(serialized: tf.Tensor, manifest: DataManifest) -> dict[str, tf.Tensor]:
    """A batch of serialized tf.Examples -> int32/float32 tensors (the one int64 -> int32 cast)."""
    spec = features.parsing_spec(manifest.format, manifest.seq_len, manifest.max_predictions)
    parsed = tf.io.parse_example(serialized, spec)
    return {name: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value
            for name, value in parsed.items()}


def parse(decoded: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
    """Record feature names -> (model inputs, labels)."""
    inputs = {
        "token_ids": decoded["input_ids"],
        "segment_ids": decoded["segment_ids"],
        "padding_mask": decoded["input_mask"],
        "mask_positions": decoded["masked_lm_positions"],
    }
    labels = {
        "masked_lm_ids": decoded["masked_lm_ids"],
        "masked_lm_weights": decoded["masked_lm_weights"],
        "next_sentence_labels": decoded.get(
            "next_sentence_labels", tf.zeros_like(decoded["input_ids"][:, :1])),
    }
    return inputs, labels


def pretraining_dataset(manifest: DataManifest, batch_size: int, seed: int, shuffle_buffer: int,
                        masking: MaskingSpec | None, input_context: tf.distribute.InputContext | None = None,
                        start_step: int = 0) -> tf.data.Dataset:
    """An endless, deterministic stream of (inputs, labels) batches.

    The stream depends only on the data, ``seed`` and the number of input
    pipelines, so a resumed run continues exactly where the killed one stopped:
    ``start_step`` skips the records of the batches already trained on (read,
    not decoded) and numbers the masking seeds from there.

    Args:
        manifest: the data to read.
        batch_size: examples per batch of this input pipeline (per replica).
        seed: seeds file order, the shuffle buffer and dynamic masking.
        shuffle_buffer: examples held for shuffling.
        masking: the dynamic masking recipe; required for ``packed`` data, ignored for ``bert``.
        input_context: from ``distribute_datasets_from_function``; shards the files per worker.
        start_step: training steps already taken on this stream.

    Raises:
        TrimbertError: this pipeline's files hold less than one batch (the stream would never yield).
    """
    pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    readable = manifest.pipeline_examples(pipelines, pipeline_id)
    if readable < batch_size:
        # The stream repeats its files forever: with no whole batch in them it would never yield.
        raise TrimbertError(
            f"{manifest.directory}: input pipeline {pipeline_id} of {pipelines} gets {readable} of the "
            f"{manifest.examples} examples, fewer than its batch of {batch_size}; write more shards or data")
    if manifest.format == "packed" and masking is None:
        raise ValueError("packed data needs a masking spec for dynamic masking")
    files = tf.data.Dataset.from_tensor_slices(list(manifest.shards))
    if len(manifest.shards) >= pipelines:
        files = files.shard(pipelines, pipeline_id)
    files = files.shuffle(len(manifest.shards), seed=seed, reshuffle_each_iteration=True).repeat()
    compression = "GZIP" if manifest.compressed else ""
    records = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=compression),
        cycle_length=min(4, len(manifest.shards)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if len(manifest.shards) < pipelines:
        # Fewer files than workers: every worker reads everything and keeps its share of records.
        records = records.shard(pipelines, pipeline_id)
    records = records.shuffle(shuffle_buffer, seed=seed + pipeline_id, reshuffle_each_iteration=True)
    # Each step takes one batch per replica of this pipeline.
    replicas_here = input_context.num_replicas_in_sync // pipelines if input_context else 1
    start_record = start_step * replicas_here * batch_size
    records = records.skip(start_record)
    if manifest.format == "packed":
        # Masks are seeded per example (by its place in the stream), so they do not depend on how
        # the stream is cut into batches: one device and N replicas see the same masked examples.
        records = records.enumerate(start=start_record).map(
            lambda number, serialized: _mask_example(serialized, manifest, masking, seed, pipeline_id, number),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        batches = records.batch(batch_size, drop_remainder=True)
    else:
        batches = records.batch(batch_size, drop_remainder=True).map(
            lambda serialized: decode(serialized, manifest), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
    return batches.map(parse).prefetch(tf.data.AUTOTUNE)


def _mask_example(serialized: tf.Tensor, manifest: DataManifest, spec: MaskingSpec, seed: int,
                  pipeline_id: int, number: tf.Tensor) -> dict[str, tf.Tensor]:
    decoded = decode(serialized[None], manifest)  # a batch of one
    stream = tf.cast(seed, tf.int64) * 1_000_003 + pipeline_id
    masked = mask_batch(decoded["input_ids"], decoded["input_mask"], spec, tf.stack([stream, number]))
    example = {
        "input_ids": masked["token_ids"],
        "input_mask": decoded["input_mask"],
        "segment_ids": decoded["segment_ids"],
        "masked_lm_positions": masked["masked_lm_positions"],
        "masked_lm_ids": masked["masked_lm_ids"],
        "masked_lm_weights": masked["masked_lm_weights"],
    }
    return {name: value[0] for name, value in example.items()}
