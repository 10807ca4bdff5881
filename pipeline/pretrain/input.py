"""tf.data input for pre-training, over the shards a Beam job's manifest lists.

decode (tf.Example -> tensors, int64 -> int32 once) is kept apart from parse
(-> the model's feature names), as in TF Model Garden. Files are sharded per
input pipeline (one per worker), interleaved, shuffled with a fixed seed,
repeated, batched to the per-replica size and prefetched. ``packed`` data is
masked dynamically, each example from a seed of its place in the stream
(``pipeline.pretrain.masking``); ``bert`` data (ours or Google's) is read as written.
"""

from __future__ import annotations

import tensorflow as tf

from beam_jobs import features
from beam_jobs.manifest import Manifest
from configs.errors import TrimbertError
from pipeline.pretrain.masking import MaskingSpec, mask_batch

MODEL_INPUTS = ("token_ids", "segment_ids", "padding_mask", "mask_positions")
LABELS = ("masked_lm_ids", "masked_lm_weights", "next_sentence_labels")


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
            lambda number, serialized: _mask_example(serialized, manifest, masking, seed, pipeline_id, number),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        batches = records.batch(batch_size, drop_remainder=True)
    else:
        batches = records.batch(batch_size, drop_remainder=True).map(
            lambda serialized: decode(serialized, manifest), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
    return batches.map(parse).prefetch(tf.data.AUTOTUNE)


def _mask_example(serialized: tf.Tensor, manifest: Manifest, spec: MaskingSpec, seed: int,
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
