"""tf.data input for pre-training, over the shards a Beam job's manifest lists.

decode (tf.Example -> tensors, int64 -> int32 once) is kept apart from parse
(-> the model's feature names), as in TF Model Garden. Files are sharded per
input pipeline (one per worker), interleaved, shuffled with a fixed seed,
repeated, batched to the per-replica size and prefetched. ``packed`` data is
masked dynamically, each example from a seed of its place in the stream
(``pipeline.pretrain.masking``); ``bert`` data (ours or Google's) is read as written.

The held-out stream (:func:`heldout_dataset`) is read in order, unshuffled, and masked from a
constant seed, so every evaluation of every run scores the same masked tokens.
"""

from __future__ import annotations

import math

import tensorflow as tf

from beam_jobs import features
from beam_jobs.manifest import Manifest
from configs.errors import TrimbertError
from pipeline.pretrain.masking import MaskingSpec, mask_batch

MODEL_INPUTS = ("token_ids", "segment_ids", "padding_mask", "mask_positions")
LABELS = ("masked_lm_ids", "masked_lm_weights", "next_sentence_labels")
# The first half of every held-out example's masking seed; the second is its place in the held-out stream.
# Not the run's seed: held-out figures compare across steps and across runs with different seeds.
HELDOUT_MASKING_SEED = 0x5EED_4E1D
REAL = "heldout_real"  # the held-out label that is 1 for an example and 0 for padding


def decode(serialized: tf.Tensor, manifest: Manifest) -> dict[str, tf.Tensor]:
    """A batch of serialized tf.Examples -> int32/float32 tensors (the one int64 -> int32 cast)."""
    spec = features.parsing_spec(*manifest.schema_key)
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


def pretraining_dataset(manifest: Manifest, batch_size: int, seed: int, shuffle_buffer: int,
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
    files = tf.data.Dataset.from_tensor_slices(list(manifest.shard_paths))
    if len(manifest.shards) >= pipelines:
        files = files.shard(pipelines, pipeline_id)
    files = files.shuffle(len(manifest.shards), seed=seed, reshuffle_each_iteration=True).repeat()
    records = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=manifest.compression),
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
            lambda number, serialized: _mask_example(serialized, manifest, masking, number,
                                                     seed=tf.cast(seed, tf.int64) * 1_000_003 + pipeline_id),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        batches = records.batch(batch_size, drop_remainder=True)
    else:
        batches = records.batch(batch_size, drop_remainder=True).map(
            lambda serialized: decode(serialized, manifest), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
    return batches.map(parse).prefetch(tf.data.AUTOTUNE)


def heldout_batches(examples: int, global_batch: int) -> int:
    """Global batches an evaluation of ``examples`` held-out examples takes (the last one padded)."""
    return math.ceil(examples / global_batch)


def heldout_dataset(manifest: Manifest, batch_size: int, masking: MaskingSpec | None, examples: int,
                    input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """The first ``examples`` held-out records as (inputs, labels) batches, the same pass repeated forever.

    The held-out shards are read in order, unshuffled. The stream is padded with zero-weight copies of
    its first record to :func:`heldout_batches` whole global batches, numbered, then dealt out record
    by record to the input pipelines; so each example is scored exactly once per pass on any number
    of replicas and workers, and every batch has the same static shape. ``packed`` records are masked
    by ``mask_batch`` from the seed ``(HELDOUT_MASKING_SEED, number)``; ``bert`` records as written.
    The labels gain :data:`REAL`: 1.0 for an example, 0.0 for padding (whose masked-LM weights are 0).
    One pass is :func:`heldout_batches` batches per replica of this pipeline; it is cached after the first.

    Args:
        manifest: data with held-out shards.
        batch_size: examples per batch of this input pipeline (per replica).
        masking: the dynamic masking recipe; required for ``packed`` data, ignored for ``bert``.
        examples: held-out examples scored per pass, at most the manifest's.
        input_context: from ``distribute_datasets_from_function``.
    """
    if not manifest.heldout_paths or not 0 < examples <= manifest.heldout.examples:
        raise ValueError(f"{manifest.directory}: {examples} held-out examples asked, "
                         f"{manifest.heldout.examples if manifest.heldout else 0} held out")
    if manifest.format == "packed" and masking is None:
        raise ValueError("packed data needs a masking spec for dynamic masking")
    pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    replicas = input_context.num_replicas_in_sync if input_context else 1
    padded = heldout_batches(examples, batch_size * replicas) * batch_size * replicas
    records = tf.data.TFRecordDataset(list(manifest.heldout_paths), compression_type=manifest.compression)
    padding = records.take(1).map(lambda serialized: (serialized, 0.0)).repeat()
    stream = records.take(examples).map(lambda serialized: (serialized, 1.0)).concatenate(padding).take(padded)
    stream = stream.enumerate().shard(pipelines, pipeline_id)
    examples_here = stream.map(
        lambda number, record: _heldout_example(record[0], record[1], number, manifest, masking),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    batches = examples_here.cache().repeat().batch(batch_size, drop_remainder=True)
    return batches.map(lambda decoded: _with_real(parse(decoded), decoded[REAL])).prefetch(tf.data.AUTOTUNE)


def _heldout_example(serialized: tf.Tensor, real: tf.Tensor, number: tf.Tensor, manifest: Manifest,
                     masking: MaskingSpec | None) -> dict[str, tf.Tensor]:
    if manifest.format == "packed":
        example = _mask_example(serialized, manifest, masking, number, seed=HELDOUT_MASKING_SEED)
    else:
        example = {name: value[0] for name, value in decode(serialized[None], manifest).items()}
    example["masked_lm_weights"] = example["masked_lm_weights"] * real
    return {**example, REAL: real}


def _with_real(parsed, real):
    inputs, labels = parsed
    return inputs, {**labels, REAL: real}


def _mask_example(serialized: tf.Tensor, manifest: Manifest, spec: MaskingSpec, number: tf.Tensor,
                  seed) -> dict[str, tf.Tensor]:
    """One record masked from the stateless seed ``(seed, number)``."""
    decoded = decode(serialized[None], manifest)  # a batch of one
    stream = tf.cast(seed, tf.int64)
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
