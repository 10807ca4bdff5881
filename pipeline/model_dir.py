"""A pre-training model directory: what it holds and how to read it back.

    MODEL_DIR/
      config.yaml        the resolved config (model, trim, data, pretrain, finetune)
      run.json           config, vocabulary sha256 and heads: a resumed run must match them
      checkpoints/       ckpt-N: model (encoder + heads), optimizer, step, clock, dropout state
      metrics.jsonl      one progress record per logged step, one held-out record per evaluation
      tensorboard/       the same as TensorBoard scalars
      summary.json       steps, wall-clock and accelerator-hours per phase, the last held-out
                         evaluation and the evaluations' seconds, weights sha256
      encoder/           the final encoder in Hugging Face format

This module owns those names: every stage that reads or writes a model directory uses the
constants below. TensorFlow is imported inside the functions that need it, so reading the layout
stays cheap (``trimbert report`` and ``--help`` do not load TensorFlow).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import models
import storage
from configs import schema as config_lib
from configs.errors import TrimbertError
from configs.schema import Config

if TYPE_CHECKING:
    import keras

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
SUMMARY_FILE = "summary.json"
ENCODER_DIR = "encoder"


def restore_pretraining_model(model_dir: str | os.PathLike, checkpoint: str | None = None,
                              next_sentence: bool | None = None,
                              encoder_name: str = "encoder") -> tuple[Config, keras.Model]:
    """Rebuilds a model directory's pre-training model (encoder + heads) from a checkpoint.

    Args:
        model_dir: a ``trimbert pretrain`` output folder.
        checkpoint: a ``checkpoints/ckpt-N`` prefix; ``None`` for the latest.
        next_sentence: build the next-sentence head; ``None`` = as the run did (``run.json``).
        encoder_name: Keras name of the encoder (a teacher beside a student needs its own).
    """
    import tensorflow as tf

    model_dir = os.fspath(model_dir)
    config_path, run_path = storage.join(model_dir, CONFIG_FILE), storage.join(model_dir, RUN_FILE)
    checkpoint = checkpoint or tf.train.latest_checkpoint(storage.join(model_dir, CHECKPOINTS_DIR))
    if not storage.isfile(config_path) or not storage.isfile(run_path) or checkpoint is None:
        raise TrimbertError(f"{model_dir}: not a trimbert model directory with a checkpoint "
                            f"(needs config.yaml, run.json and checkpoints/ckpt-N)")
    config = config_lib.load(config_path)
    if next_sentence is None:
        next_sentence = storage.read_json(run_path)["next_sentence"]
    encoder = models.build_encoder(config, name=encoder_name)
    model = models.build_pretraining_model(encoder, next_sentence=next_sentence)
    tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
    return config, model


def weights_digest(model: keras.Model) -> str:
    """sha256 over every weight's bytes, in a fixed order: equal digests, identical weights."""
    import keras

    digest = hashlib.sha256()
    for variable in sorted(model.weights, key=lambda v: v.path):
        digest.update(variable.path.encode())
        digest.update(keras.ops.convert_to_numpy(variable).tobytes())
    return digest.hexdigest()


# pretrain fields that change how a run is watched, not what it trains: a resume may change them.
OPERATIONAL_FIELDS = ("log_every", "checkpoint_every", "keep_checkpoints", "stall_timeout_seconds",
                      "sigterm_grace_seconds", "eval_every")


def check_same_run(model_dir: str, config: Config, vocabulary_sha256: str, use_nsp: bool, chief: bool,
                   identity: dict | None = None, allow_changes: bool = False,
                   log: Callable[[str], None] = print) -> None:
    """A model directory belongs to one run; the first records it in run.json, a resume must match it.

    Model, trim, vocabulary and heads can never change (the checkpoints would not fit). The pretrain
    section (but its ``OPERATIONAL_FIELDS``), the data folders and the strategy (``identity``) may
    change only with ``allow_changes``, which records what changed in run.json's ``changes``.
    """
    run_file = storage.join(model_dir, RUN_FILE)
    current = {"config": config.to_dict(), "vocabulary_sha256": vocabulary_sha256, "next_sentence": use_nsp,
               **(identity or {})}
    if not storage.isfile(run_file):
        if chief:
            storage.write_json(run_file, current)
            storage.write_text(storage.join(model_dir, CONFIG_FILE), config_lib.dump(config))
        return
    previous = storage.read_json(run_file)
    if previous["vocabulary_sha256"] != vocabulary_sha256:
        raise TrimbertError(f"{model_dir} was trained on data with vocabulary sha256 "
                            f"{previous['vocabulary_sha256'][:12]}..., this data has {vocabulary_sha256[:12]}...")
    if previous["config"]["model"] != current["config"]["model"] or \
            previous["config"]["trim"] != current["config"]["trim"]:
        raise TrimbertError(f"{model_dir} holds a different model or trim; use a new --model-dir")
    changes = run_changes(previous, current)
    if not changes:
        return
    listed = "; ".join(f"{field}: {before!r} -> {after!r}" for field, (before, after) in changes.items())
    if not allow_changes:
        raise TrimbertError(f"{model_dir} was run with other settings ({listed}); rerun the recorded command to "
                            f"resume, use a new --model-dir, or pass --allow-changes to resume with these")
    log(f"resuming {model_dir} with changes: {listed}")
    if chief:
        history = [*previous.get("changes", []), {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"), "fields": {field: list(pair) for field, pair in changes.items()}}]
        storage.write_json(run_file, {**current, "changes": history})
        storage.write_text(storage.join(model_dir, CONFIG_FILE), config_lib.dump(config))


def run_changes(previous: dict, current: dict) -> dict[str, tuple]:
    """Field -> (recorded, now) for the pretrain fields, data folders and strategy that differ.

    A field the recorded run.json lacks (written before it was recorded) is not compared.
    """
    changes = {}
    before, after = previous["config"].get("pretrain", {}), current["config"].get("pretrain", {})
    for field in sorted(before):
        if field not in OPERATIONAL_FIELDS and before[field] != after.get(field):
            changes[f"pretrain.{field}"] = (before.get(field), after.get(field))
    for key in ("data", "strategy"):
        if key in previous and previous[key] != current.get(key):
            changes[key] = (previous[key], current.get(key))
    return changes


def checkpoint_step(path: str) -> int:
    """The global step a checkpoint was written at, read without building anything."""
    import tensorflow as tf

    # The reader itself, not tf.train.load_checkpoint: that asks isdir(path) first, which on
    # prefix-based filesystems (TensorFlow's ram://) is true for a checkpoint prefix.
    reader = tf.compat.v1.train.NewCheckpointReader(path)
    return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


def drop_metrics_after(path: str, step: int, chief: bool) -> None:
    """After a resume, forgets progress and held-out lines logged past the restored step (they are re-run)."""
    if not chief or not storage.isfile(path):
        return
    kept = [line for line in storage.read_text(path).splitlines() if line and json.loads(line)["step"] <= step]
    storage.write_text(path, "".join(line + "\n" for line in kept))
